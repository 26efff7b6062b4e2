// METEOR 1.5's -stdio protocol (SCORE and EVAL lines, each answered in order, as the jar's own
// Meteor.scoreStdio does) with the lines worked on by several threads. The jar aligns one segment
// at a time; here each thread aligns with its own MeteorScorer made by the jar's sharing
// constructor (its own stemmer, the synonym and paraphrase tables loaded once and only read).
//
// Usage: java -cp meteor-1.5.jar:DIR MeteorPool THREADS [the jar's options, e.g. -l en -norm]
// Compiled by benchmark/metrics/meteor.py; kept in the default package, beside the jar's Meteor.
import edu.cmu.meteor.scorer.MeteorConfiguration;
import edu.cmu.meteor.scorer.MeteorScorer;
import edu.cmu.meteor.scorer.MeteorStats;
import java.io.BufferedOutputStream;
import java.io.BufferedReader;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;

public final class MeteorPool {
    private static final Future<String> END = CompletableFuture.completedFuture(null);

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            fail("usage: MeteorPool THREADS [meteor options]");
        }
        int threads = Integer.parseInt(args[0]);
        String[] meteorArgs = new String[args.length + 1];   // the jar's "<test> <reference> [options]"
        meteorArgs[0] = "-";
        meteorArgs[1] = "-";
        System.arraycopy(args, 1, meteorArgs, 2, args.length - 1);
        Properties props = Meteor.createPropertiesFromArgs(meteorArgs, 2);
        MeteorScorer shared = new MeteorScorer(new MeteorConfiguration(props));
        // the normaliser fills static tables on first use: do it here, before any thread runs
        shared.getMeteorStats("a", new ArrayList<>(List.of("a")));
        ThreadLocal<MeteorScorer> scorer = ThreadLocal.withInitial(() -> new MeteorScorer(shared));
        ExecutorService pool = Executors.newFixedThreadPool(threads, task -> {
            Thread t = new Thread(task, "meteor");
            t.setDaemon(true);
            return t;
        });
        BlockingQueue<Future<String>> answers = new LinkedBlockingQueue<>();
        Thread reader = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                String line;
                long number = 0;
                while ((line = in.readLine()) != null) {
                    final String request = line;
                    final long at = ++number;
                    answers.put(pool.submit(() -> {
                        try {
                            return answer(request, scorer.get());
                        } catch (RuntimeException e) {
                            throw new IllegalStateException("input line " + at + " (" + clip(request) + "): " + e, e);
                        }
                    }));
                }
                answers.put(END);
            } catch (Exception e) {
                fail("reading input: " + e);
            }
        }, "meteor-input");
        reader.setDaemon(true);
        reader.start();

        PrintStream out = new PrintStream(new BufferedOutputStream(new FileOutputStream(FileDescriptor.out), 1 << 16),
                                          false, "UTF-8");
        while (true) {
            Future<String> next = answers.poll();
            if (next == null) {          // nothing queued: what is answered must reach the reader now
                out.flush();
                next = answers.take();
            }
            if (next == END) {
                break;
            }
            if (!next.isDone()) {
                out.flush();
            }
            try {
                out.println(next.get());
            } catch (ExecutionException e) {
                fail(e.getCause().getMessage());
            }
        }
        out.flush();
        System.exit(out.checkError() ? 1 : 0);
    }

    /** The jar's answer to one line: SCORE's statistics, or EVAL's segment scores and total. */
    static String answer(String line, MeteorScorer scorer) {
        String[] parts = line.split("\\|\\|\\|");
        if (line.startsWith("SCORE") || line.startsWith("score")) {
            if (parts.length < 3) {
                throw new IllegalArgumentException("SCORE needs at least one reference and a hypothesis");
            }
            ArrayList<String> refs = new ArrayList<>();
            for (int i = 1; i < parts.length - 1; i++) {
                refs.add(parts[i].trim());
            }
            return scorer.getMeteorStats(parts[parts.length - 1].trim(), refs).toString();
        }
        if (line.startsWith("EVAL") || line.startsWith("eval")) {
            if (parts.length < 2) {
                throw new IllegalArgumentException("EVAL needs statistics");
            }
            MeteorStats total = new MeteorStats();
            StringBuilder out = new StringBuilder();
            for (int i = 1; i < parts.length; i++) {
                MeteorStats stats = new MeteorStats(parts[i].trim());
                scorer.computeMetrics(stats);
                out.append(stats.score).append('\n');
                total.addStats(stats);
            }
            scorer.computeMetrics(total);
            return out.append(total.score).toString();
        }
        throw new IllegalArgumentException("not a SCORE or EVAL line");
    }

    private static String clip(String line) {
        return line.length() > 200 ? line.substring(0, 200) + "..." : line;
    }

    private static void fail(String message) {
        System.err.println("MeteorPool: " + message);
        System.err.flush();
        Runtime.getRuntime().halt(1);
    }
}
