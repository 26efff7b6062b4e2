"""Time `mmtt score` at full size against the official script and a plain reference, in one go.

Generates a full-size test split (21,679 items, 512 px truth masks, explanations of realistic
length) and a submission (224 px predicted masks, 5% of them at 512 px, explanations), then runs,
each in its own process tree so that wall time, CPU time and peak memory are measured alike
(peak memory per process, Python and Java apart):
  1. the official `scripts/evaluation/evaluate_metrics.py --num_workers 2`, with `--official PATH`
     (a checkout of the official repository or the script itself; it is run, never imported);
  2. the project's plain reference of the same protocol (`benchmark.scoring.reference`: a per-image
     PIL/numpy loop and a fresh pycocoevalcap run);
  3. `mmtt score --protocol official`, empty truth cache (first scoring of a dataset);
  4. the same again, truth cache warm (a re-score);
  5. `mmtt score` strict with everything the board shows (METEOR, 1,000-replicate CIs,
     breakdowns by method / source / region, clues), warm;
  6. warm official re-scores of the first 3,000 and 10,000 items (cost vs size);
and the floor: decoding every predicted PNG once (with PIL, and with libspng as the mask pass
does), CPU seconds / 2 cores.
It checks the official-protocol numbers agree with the reference (and the official script) to
1e-6, prints ratios and each run's per-stage wall times (`mmtt score --timings`). The METEOR
driver is compiled into the cache once before (its time printed apart), so "warm" means warm.
A shared machine's speed drifts from minute to minute: `--repeat N` runs the official script and
the full-size runs N times, one round after another, and prints medians and each round's
speed-up against the official run of the same round.

    python scripts/bench_score.py [--n 21679] [--workdir .mmtt/bench-score] [--official PATH] [--repeat N]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

REGION_WORDS = ["left eye", "right eye", "eyes", "pupils", "lips", "mouth", "nose", "nostrils", "ears",
                "left cheek", "cheeks", "forehead", "chin", "jaw", "eyebrows", "teeth", "beard",
                "mustache", "skin", "hair", "wrinkles", "freckles", "dimple"]
ARTEFACTS = ["looks unnaturally smooth", "is blurry at the edges", "has a colour that does not match the face",
             "shows a visible seam", "has a repeated texture", "lacks the fine grain of the rest of the photo",
             "is slightly misaligned", "has inconsistent lighting", "looks waxy and flat", "is oddly asymmetric",
             "has smeared details", "has an unnatural shape"]
OPENERS = ["On close inspection,", "It is noticeable that", "The image looks edited because", "Clearly,",
           "Looking carefully,", "", "At first glance the face looks real, but"]
CLOSERS = ["These artefacts suggest the region was generated.", "This is typical of inpainting.",
           "The rest of the face looks natural.", "Such traces are hard to miss once seen.", ""]


def explanation(rng: np.random.Generator) -> str:
    parts = []
    for _ in range(int(rng.integers(2, 5))):
        region = REGION_WORDS[int(rng.integers(len(REGION_WORDS)))]
        artefact = ARTEFACTS[int(rng.integers(len(ARTEFACTS)))]
        opener = OPENERS[int(rng.integers(len(OPENERS)))]
        parts.append(f"{opener} the {region} {artefact}.".strip().capitalize())
    parts.append(CLOSERS[int(rng.integers(len(CLOSERS)))])
    return " ".join(p for p in parts if p)


def _blob(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.ogrid[:size, :size]
    mask = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0.25, 0.75, 2) * size
        ry, rx = rng.uniform(0.05, 0.25, 2) * size
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return mask


def _make_item(args: tuple[int, int, str]) -> dict:
    i, seed, root = args
    rng = np.random.default_rng([seed, i])
    prefix, folder = [("sd", "celeb512/sd_inpaint"), ("mat", "celeb512/mat_gan"),
                      ("e4s", "FFHQ512/e4s"), ("smiling", "face_attribute_image/smiling")][i % 4]
    img_rel = f"dataset/{folder}/samples/{i:05d}.png"
    mask_rel = f"dataset/{folder}/masks/{i:05d}.png"
    truth = _blob(rng, 512)
    Image.fromarray((truth * 255).astype(np.uint8)).save(Path(root) / mask_rel, compress_level=1)
    # a prediction: the truth at 224 px, shifted and with a spurious blob, thresholded like a model's
    pred = np.asarray(Image.fromarray((truth * 255).astype(np.uint8)).resize((224, 224), Image.BILINEAR)) > 127
    pred = np.roll(pred, tuple(rng.integers(-8, 9, 2)), axis=(0, 1))
    if rng.random() < 0.3:
        pred |= _blob(rng, 224)
    if rng.random() < 0.05:
        pred[:] = False
    out = Path(root) / "sub" / "masks" / img_rel
    Image.fromarray((pred * 255).astype(np.uint8)).save(out, compress_level=1)
    os.link(Path(root) / "placeholder.png", Path(root) / img_rel)
    truth_caption = explanation(rng)
    pred_caption = truth_caption if rng.random() < 0.05 else explanation(rng)
    return {"image_id": f"{prefix}_{i:05d}", "instance_id": str(i), "img_path": img_rel, "mask_path": mask_rel,
            "caption": truth_caption, "pred_caption": pred_caption}


def generate(root: Path, n: int, seed: int = 0) -> None:
    from benchmark.data.regions import multilabel

    if (root / "test-mutilabel.json").is_file() and (root / "sub" / "predictions.jsonl").is_file():
        return
    shutil.rmtree(root, ignore_errors=True)
    for folder in ("celeb512/sd_inpaint", "celeb512/mat_gan", "FFHQ512/e4s", "face_attribute_image/smiling"):
        for sub in ("samples", "masks"):
            (root / "dataset" / folder / sub).mkdir(parents=True)
            (root / "sub" / "masks" / "dataset" / folder / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "placeholder.png")
    with ProcessPoolExecutor() as pool:
        items = list(pool.map(_make_item, [(i, seed, str(root)) for i in range(n)], chunksize=256))
    records, lines = [], []
    for it in items:
        lines.append(json.dumps({"image_id": it["image_id"], "img_path": it["img_path"], "caption": it.pop("pred_caption")}))
        records.append({**it, "multilabel": multilabel(it["caption"])})
    (root / "sub" / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    (root / "test-mutilabel.json").write_text(json.dumps(records))


def mixed_sizes(root: Path, every: int = 20) -> None:
    """Every `every`-th predicted mask at the truth's 512 px (the rest stay at 224 px), as some
    models write them; idempotent."""
    for k, line in enumerate((root / "test-mutilabel.json").read_text().split('"img_path": "')[1:]):
        if k % every:
            continue
        path = root / "sub" / "masks" / Path(line.split('"', 1)[0]).with_suffix(".png")
        with Image.open(path) as im:
            if im.size == (512, 512):
                continue
            big = im.resize((512, 512), Image.NEAREST)
        big.save(path, compress_level=1)


def subsets(root: Path, sizes: list[int]) -> None:
    """Splits `first<k>` of the first k items, with their own predictions (masks shared)."""
    records = json.loads((root / "test-mutilabel.json").read_text())
    lines = (root / "sub" / "predictions.jsonl").read_text().splitlines()
    for k in sizes:
        if not (root / f"first{k}-mutilabel.json").is_file():
            (root / f"sub{k}").mkdir(exist_ok=True)
            (root / f"sub{k}" / "predictions.jsonl").write_text("\n".join(lines[:k]) + "\n")
            (root / f"first{k}-mutilabel.json").write_text(json.dumps(records[:k]))


_WRAPPER = r"""
import json, os, resource, subprocess, sys, threading, time
def tree(root):
    kids = {}
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                with open(f'/proc/{pid}/stat') as fh:
                    parts = fh.read().rsplit(')', 1)[1].split()
                kids.setdefault(int(parts[1]), []).append(int(pid))
            except OSError:
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out
peak = {}
def watch(p):
    while p.poll() is None:
        for pid in tree(p.pid):
            try:
                with open(f'/proc/{pid}/status') as fh:
                    st = dict(l.split(':', 1) for l in fh if ':' in l)
                kind = 'java' if 'java' in st['Name'] else 'python'
                peak[kind] = max(peak.get(kind, 0), int(st.get('VmRSS', '0 kB').split()[0]) / 1024)
            except (OSError, KeyError, ValueError):
                pass
        time.sleep(0.25)
t = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
w = threading.Thread(target=watch, args=(p,), daemon=True); w.start()
out, err = p.communicate()
wall = time.perf_counter() - t
w.join()
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({'rc': p.returncode, 'wall': wall, 'cpu': u.ru_utime + u.ru_stime, 'peak': peak, 'out': out, 'err': err}))
"""


def run_isolated(cmd: list[str], env: dict) -> dict:
    """Run `cmd` in its own process tree: wall s, CPU s (all descendants), peak RSS MiB per process
    kind (largest Python and largest Java process), stdout, stderr."""
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], capture_output=True, text=True, env=env)
    if done.returncode != 0 or not done.stdout.strip():
        sys.exit(f"wrapper failed: {done.stderr}")
    res = json.loads(done.stdout)
    if res["rc"] != 0:
        sys.exit(f"command failed ({res['rc']}): {' '.join(cmd)}\n{res['err'][-3000:]}")
    return res


def timings(res: dict) -> dict[str, float]:
    for line in res["err"].splitlines():
        if line.startswith('{"timings"'):
            return json.loads(line)["timings"]
    return {}


def decode_floor(root: Path) -> dict[str, float]:
    """CPU seconds to read and decode every predicted PNG once (one process): with PIL, and with
    the mask pass's decoder (libspng for 8-bit grey PNGs, PIL for the rest)."""
    from benchmark.data.imageio import decode_grey_png

    paths = sorted((root / "sub" / "masks").rglob("*.png"))
    out = {}
    for name, decode in (("PIL", lambda data: np.asarray(Image.open(io.BytesIO(data)))),
                         ("libspng", decode_grey_png)):
        start = time.process_time()
        for path in paths:
            decode(path.read_bytes())
        out[name] = time.process_time() - start
    return out


def official_script(path: str) -> Path:
    p = Path(path)
    script = p if p.is_file() else p / "scripts" / "evaluation" / "evaluate_metrics.py"
    if not script.is_file():
        sys.exit(f"--official {path}: no evaluate_metrics.py there")
    return script


def clear_truth(cache: Path) -> None:
    """Empty the truth cache (a first scoring of the dataset); the compiled METEOR driver stays."""
    for folder in cache.glob("truth-*"):
        shutil.rmtree(folder, ignore_errors=True)


def median(values: list[float]) -> float:
    return float(np.median(values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=21679)
    ap.add_argument("--workdir", default=".mmtt/bench-score")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--official", help="the official repository checkout (or its evaluate_metrics.py) to time")
    ap.add_argument("--sizes", default="3000,10000", help="smaller sizes for the cost-vs-size runs")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of the official script and the full-size mmtt runs, one after another; "
                         "medians are shown, with each round's speed-up against its own official run")
    args = ap.parse_args()
    if args.repeat < 1:
        sys.exit("--repeat must be at least 1")
    root = Path(args.workdir).resolve()
    t0 = time.perf_counter()
    generate(root, args.n, args.seed)
    mixed_sizes(root)
    sizes = [k for k in (int(v) for v in args.sizes.split(",") if v) if k < args.n]
    subsets(root, sizes)
    print(f"data: {args.n} items at {root} ({time.perf_counter() - t0:.1f} s to generate or reuse)")
    env = dict(os.environ)
    cache = root / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    env["MMTT_CACHE_DIR"] = str(cache)
    py = sys.executable
    sub = root / "sub"
    t0 = time.perf_counter()
    run_isolated([py, "-c", "from benchmark.metrics.meteor import driver_classes; driver_classes()"], env)
    print(f"one-time: compile the METEOR driver into the cache ({time.perf_counter() - t0:.1f} s)")
    rounds: dict[str, list[dict]] = {}

    def timed(name: str, cmd: list[str]) -> dict:
        res = run_isolated(cmd, env)
        rounds.setdefault(name, []).append(res)
        return res

    official_cmd = None
    if args.official:
        script = official_script(args.official)
        preds = [json.loads(line) for line in (sub / "predictions.jsonl").read_text().splitlines()]
        (root / "predictions.json").write_text(json.dumps(preds))
        official_cmd = [py, str(script), "--gt_json", str(root / "test-mutilabel.json"),
                        "--pred_json", str(root / "predictions.json"), "--gt_mask_base", str(root),
                        "--pred_mask_base", str(sub / "masks"), "--output_file", str(root / "official-out" / "metrics.json"),
                        "--num_workers", "2"]
    reference_name = "reference (plain loop + fresh pycocoevalcap)"
    reference_cmd = [py, "-m", "benchmark.scoring.reference", str(root / "test-mutilabel.json"),
                     str(sub / "predictions.jsonl"), str(root), str(sub / "masks")]
    score = [py, "-m", "benchmark", "score", "--data", str(root), "--json", "--timings"]
    official = [*score, str(sub), "--split", "test", "--protocol", "official"]
    for r in range(args.repeat):
        if official_cmd:
            timed("official evaluate_metrics.py (2 workers)", official_cmd)
        if r == 0 or not official_cmd:
            timed(reference_name, reference_cmd)
        clear_truth(cache)
        timed("mmtt score --protocol official, cold cache", official)
        timed("mmtt score --protocol official, re-score", official)
        timed("mmtt score strict, everything, warm", [*score, str(sub), "--split", "test"])
    for k in sizes:
        cmd = [*score, str(root / f"sub{k}"), "--masks", str(sub / "masks"), "--split", f"first{k}",
               "--protocol", "official"]
        run_isolated(cmd, env)  # warms the truth cache of that split
        timed(f"re-score, first {k:,} items", cmd)
    floor_cpu = decode_floor(root)

    from benchmark.scoring.reference import as_metrics

    ref = as_metrics(json.loads(rounds[reference_name][0]["out"]))
    scored = [json.loads(r["out"])["metrics"] for name in ("mmtt score --protocol official, cold cache",
                                                           "mmtt score --protocol official, re-score")
              for r in rounds[name]]

    def largest_difference(theirs: dict[str, float]) -> float:
        return max(abs(ours[k] - v) for ours in scored for k, v in theirs.items())

    worst = largest_difference(ref)
    agree = worst <= 1e-6
    base_name = next(iter(rounds))
    base = rounds[base_name]
    base_wall = median([r["wall"] for r in base])
    base_py = max(max(r["peak"].get("python", 1) for r in base), 1)
    rounds_note = f", median of {args.repeat} rounds" if args.repeat > 1 else ""
    print(f"\nratios against: {base_name}{rounds_note}")
    print(f"{'run':<48}{'wall s':>8}{'CPU s':>8}{'py MiB':>8}{'java MiB':>9}{'speed-up':>9}{'mem ratio':>10}"
          + ("   speed-up per round" if args.repeat > 1 else ""))
    for name, rs in rounds.items():
        wall, cpu = median([r["wall"] for r in rs]), median([r["cpu"] for r in rs])
        py_mib = max(r["peak"].get("python", 0) for r in rs)
        java_mib = max(r["peak"].get("java", 0) for r in rs)
        line = (f"{name:<48}{wall:>8.1f}{cpu:>8.1f}{py_mib:>8.0f}{java_mib:>9.0f}"
                f"{base_wall / wall:>8.1f}x{py_mib / base_py:>10.2f}")
        if args.repeat > 1 and len(rs) == len(base):
            line += "   " + " ".join(f"{b['wall'] / r['wall']:.2f}x" for b, r in zip(base, rs))
        print(line)
    for decoder, cpu in floor_cpu.items():
        print(f"{'floor: decode every predicted PNG, ' + decoder:<48}{cpu / 2:>8.1f}{cpu:>8.1f}   (wall = CPU / 2 cores)")
    if official_cmd:
        out = json.loads((root / "official-out" / "metrics.json").read_text())
        worst_official = largest_difference(as_metrics(out))
        agree = agree and worst_official <= 1e-6
        print(f"numbers agree with the official script to 1e-6: {worst_official <= 1e-6} "
              f"(largest difference {worst_official:.2e})")
    print(f"numbers agree with the reference to 1e-6: {worst <= 1e-6} (largest difference {worst:.2e})")
    print(f"\nper-stage wall seconds (mmtt score --timings{', medians' if args.repeat > 1 else ''}):")
    for name, rs in rounds.items():
        stages: dict[str, list[float]] = {}
        for r in rs:
            for k, v in timings(r).items():
                stages.setdefault(k, []).append(v)
        if stages:
            print(f"  {name}: " + ", ".join(f"{k} {median(v):.2f}" for k, v in stages.items()))
    scale = [(k, rounds[f"re-score, first {k:,} items"][0]["wall"]) for k in sizes]
    scale.append((args.n, median([r["wall"] for r in rounds["mmtt score --protocol official, re-score"]])))
    print("\ncost vs size (warm official re-score): " + ", ".join(
        f"{k:,} items {w:.1f} s ({w / k * 1e3:.2f} ms/item)" for k, w in scale))
    if not agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
