// METEOR 1.5's -stdio protocol (SCORE and EVAL lines, each answered in order, as the jar's own
// Meteor.scoreStdio does) with the lines worked on by several threads. The jar aligns one segment
// at a time; here each thread aligns with its own MeteorScorer made by the jar's sharing
// constructor (its own stemmer, the synonym and paraphrase tables loaded once and only read).
//
// One difference: the input starts with "BATCH n", and the n SCORE lines that follow are all it
// will score (EVAL lines may come after them). The driver prepares every segment as
// MeteorScorer.getMeteorStats would (the jar's Normalizer, lower-casing), on its threads, before
// loading its tables, and keeps of the paraphrase table's 5.3 million entries those whose words
// all occur in the prepared batch. The jar's paraphrase matcher (ParaphraseMatcher with
// ParaphraseTransducer) only ever matches an entry whose phrase is a run of one segment's words
// and whose paraphrase is a run of the other's, compares words by identity, ignores the entries'
// probabilities and visits entries in file order: an entry with a word foreign to the batch can
// never match, and the kept entries keep their order, so every alignment, and every statistic,
// is the jar's. Parsing the whole table costs ~15 s of CPU per process, scanning it for the
// batch's words ~4 s; the prepared segments are aligned by scorers that do not prepare them again
// (the Normalizer's regular expressions are a good part of METEOR's time).
//
// Usage: java -cp meteor-1.5.jar:DIR MeteorPool THREADS [the jar's options, e.g. -l en -norm] < BATCH, SCORE..., EVAL...
// Compiled by benchmark/metrics/meteor.py; kept in the default package, beside the jar's Meteor.
import edu.cmu.meteor.scorer.MeteorConfiguration;
import edu.cmu.meteor.scorer.MeteorScorer;
import edu.cmu.meteor.scorer.MeteorStats;
import edu.cmu.meteor.util.Normalizer;
import java.io.BufferedOutputStream;
import java.io.BufferedReader;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.io.Writer;
import java.net.URL;
import java.net.URLConnection;
import java.net.URLStreamHandler;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.StringTokenizer;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.zip.GZIPInputStream;
import java.util.zip.GZIPOutputStream;

public final class MeteorPool {
    private static final Future<String> END = CompletableFuture.completedFuture(null);
    private static final String BATCH = "BATCH ";
    private static final String MEMORY = "mmtt-memory";   // URL scheme of the batch's paraphrase table
    private static volatile byte[] memoryTable;

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
        MeteorConfiguration config = new MeteorConfiguration(props);

        ExecutorService pool = Executors.newFixedThreadPool(threads, task -> {
            Thread t = new Thread(task, "meteor");
            t.setDaemon(true);
            return t;
        });
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8), 1 << 16);
        String header = in.readLine();
        if (header == null || !header.startsWith(BATCH)) {
            fail("input line 1" + (header == null ? "" : " (" + clip(header) + ")") + ": not a BATCH line (the driver reads \"BATCH n\" first)");
        }
        List<Segment> batch = prepare(readBatch(in, header), config, pool);
        if (config.getParaDirURL() != null) {
            memoryTable = batch.isEmpty() ? gzip("") : restrictedTable(config.getParaDirURL(), words(batch));
            URL.setURLStreamHandlerFactory(scheme -> MEMORY.equals(scheme) ? new MemoryHandler() : null);
            config.setParaFileURL(new URL(MEMORY + ":paraphrase"));
        }
        config.setNormalization(0);   // the segments are prepared already
        MeteorScorer shared = new MeteorScorer(config);
        memoryTable = null;   // parsed: no longer needed
        // the normaliser fills static tables on first use: do it here, before any thread runs
        shared.getMeteorStats("a", new ArrayList<>(List.of("a")));
        ThreadLocal<MeteorScorer> scorer = ThreadLocal.withInitial(() -> new MeteorScorer(shared));
        BlockingQueue<Future<String>> answers = new LinkedBlockingQueue<>();
        for (int k = 0; k < batch.size(); k++) {
            final Segment segment = batch.get(k);
            final long at = k + 2;
            answers.put(pool.submit(() -> {
                try {
                    return scorer.get().getMeteorStats(segment.hyp, segment.refs).toString();
                } catch (RuntimeException e) {
                    throw new IllegalStateException("input line " + at + ": " + e, e);
                }
            }));
        }
        final long firstNumber = batch.size() + 2;
        Thread reader = new Thread(() -> {
            try (in) {
                long number = firstNumber;
                String next;
                while ((next = in.readLine()) != null) {
                    answers.put(submit(pool, scorer, next, number++));
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

    /** A line after the batch: the jar's answer to an EVAL (segment scores, then the total). */
    private static Future<String> submit(ExecutorService pool, ThreadLocal<MeteorScorer> scorer, String request, long at) {
        return pool.submit(() -> {
            try {
                return evaluate(request, scorer.get());
            } catch (RuntimeException e) {
                throw new IllegalStateException("input line " + at + " (" + clip(request) + "): " + e, e);
            }
        });
    }

    private static boolean isScore(String line) {
        return line.startsWith("SCORE") || line.startsWith("score");
    }

    static String evaluate(String line, MeteorScorer scorer) {
        if (isScore(line)) {
            throw new IllegalArgumentException("a SCORE line after the BATCH (its paraphrase table holds the batch's words only)");
        }
        if (!line.startsWith("EVAL") && !line.startsWith("eval")) {
            throw new IllegalArgumentException("not an EVAL line");
        }
        String[] parts = line.split("\\|\\|\\|");
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

    /** A SCORE line's hypothesis and references, prepared as the scorer would prepare them. */
    static final class Segment {
        final String hyp;
        final ArrayList<String> refs;

        Segment(String hyp, ArrayList<String> refs) {
            this.hyp = hyp;
            this.refs = refs;
        }
    }

    /** The n SCORE lines a "BATCH n" line announces. */
    private static List<String> readBatch(BufferedReader in, String header) throws IOException {
        int n = -1;
        try {
            n = Integer.parseInt(header.substring(BATCH.length()).trim());
        } catch (NumberFormatException e) {
            // reported below
        }
        if (n < 0) {
            fail("input line 1 (" + clip(header) + "): not a line count");
        }
        List<String> lines = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            String score = in.readLine();
            if (score == null) {
                fail("input ended after line " + (i + 1) + ", inside a BATCH of " + n + " lines");
            }
            if (!isScore(score) || score.split("\\|\\|\\|").length < 3) {
                fail("input line " + (i + 2) + " (" + clip(score) + "): a BATCH holds SCORE lines with a reference and a hypothesis");
            }
            lines.add(score);
        }
        return lines;
    }

    /**
     * Each line's segments as MeteorScorer.getMeteorStats(String, ArrayList) prepares them before
     * aligning: the jar's Normalizer when the configuration normalizes, then lower case
     * (MeteorScorer.setNormalize's reading of the normalization level: 1 lower-case; 2 normalize,
     * keep punctuation, lower-case; 3 the same without punctuation). On the pool, in order.
     */
    private static List<Segment> prepare(List<String> lines, MeteorConfiguration config, ExecutorService pool)
            throws InterruptedException, ExecutionException {
        int level = config.getNormalization();
        boolean normalize = level == 2 || level == 3;
        boolean keepPunctuation = level != 3;
        boolean lowerCase = level >= 1 && level <= 3;
        int langID = config.getLangID();
        if (normalize) {
            Normalizer.normalizeLine("a", langID, keepPunctuation);   // its static tables, before any thread
        }
        List<Future<List<Segment>>> parts = new ArrayList<>();
        for (int start = 0; start < lines.size(); start += 256) {
            List<String> chunk = lines.subList(start, Math.min(lines.size(), start + 256));
            parts.add(pool.submit(() -> {
                List<Segment> out = new ArrayList<>(chunk.size());
                for (String line : chunk) {
                    String[] fields = line.split("\\|\\|\\|");
                    ArrayList<String> refs = new ArrayList<>();
                    for (int i = 1; i < fields.length - 1; i++) {
                        refs.add(prepared(fields[i].trim(), normalize, keepPunctuation, lowerCase, langID));
                    }
                    out.add(new Segment(prepared(fields[fields.length - 1].trim(), normalize, keepPunctuation, lowerCase,
                                                 langID), refs));
                }
                return out;
            }));
        }
        List<Segment> segments = new ArrayList<>(lines.size());
        for (Future<List<Segment>> part : parts) {
            segments.addAll(part.get());
        }
        return segments;
    }

    private static String prepared(String text, boolean normalize, boolean keepPunctuation, boolean lowerCase, int langID) {
        String out = normalize ? Normalizer.normalizeLine(text, langID, keepPunctuation) : text;
        return lowerCase ? out.toLowerCase() : out;
    }

    /** Every word of the prepared segments, split as the jar's Alignment splits them. */
    static Set<String> words(List<Segment> segments) {
        Set<String> words = new HashSet<>();
        for (Segment segment : segments) {
            tokens(segment.hyp, words);
            for (String ref : segment.refs) {
                tokens(ref, words);
            }
        }
        return words;
    }

    private static void tokens(String text, Set<String> into) {
        StringTokenizer tokens = new StringTokenizer(text);   // as Alignment and ParaphraseTransducer split
        while (tokens.hasMoreTokens()) {
            into.add(tokens.nextToken());
        }
    }

    /** The paraphrase table (gzip, entries of three lines: probability, phrase, paraphrase) cut
     * to the entries whose phrase and paraphrase words are all in `words`, in file order, gzip. */
    static byte[] restrictedTable(URL table, Set<String> words) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(
                 new GZIPInputStream(table.openStream(), 1 << 16), StandardCharsets.UTF_8), 1 << 16);
             Writer out = new OutputStreamWriter(new GZIPOutputStream(bytes), StandardCharsets.UTF_8)) {
            String probability;
            while ((probability = in.readLine()) != null) {
                String phrase = in.readLine();
                String paraphrase = in.readLine();
                if (phrase == null || paraphrase == null) {
                    throw new IOException(table + ": an entry cut short at its end");
                }
                if (within(phrase, words) && within(paraphrase, words)) {
                    out.write(probability + "\n" + phrase + "\n" + paraphrase + "\n");
                }
            }
        }
        return bytes.toByteArray();
    }

    private static boolean within(String text, Set<String> words) {
        StringTokenizer tokens = new StringTokenizer(text);
        while (tokens.hasMoreTokens()) {
            if (!words.contains(tokens.nextToken())) {
                return false;
            }
        }
        return true;
    }

    private static byte[] gzip(String text) throws IOException {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (Writer out = new OutputStreamWriter(new GZIPOutputStream(bytes), StandardCharsets.UTF_8)) {
            out.write(text);
        }
        return bytes.toByteArray();
    }

    /** Serves `memoryTable` under the mmtt-memory: scheme (the jar opens its table by URL). */
    private static final class MemoryHandler extends URLStreamHandler {
        @Override
        protected URLConnection openConnection(URL url) {
            return new URLConnection(url) {
                @Override
                public void connect() {
                }

                @Override
                public InputStream getInputStream() throws IOException {
                    byte[] table = memoryTable;
                    if (table == null) {
                        throw new IOException(url + ": no table in memory");
                    }
                    return new ByteArrayInputStream(table);
                }
            };
        }
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
