"""Plant realistic bugs one at a time and check that the tests catch each one.

Run on demand, not in CI (about 15 minutes on a loaded 2-core machine):

    /work/main/.venv/bin/python scripts/mutants.py            # every mutant
    /work/main/.venv/bin/python scripts/mutants.py --list     # names only
    /work/main/.venv/bin/python scripts/mutants.py theory_chi_wrong_layer fmt_sci_fixed_point
    /work/main/.venv/bin/python scripts/mutants.py --group kernels

The project (the files git knows, tracked or new, as they are in the working tree)
is copied to a temporary folder; the working tree is never written. For each
mutant one exact piece of text in one file is replaced, the mutant's tests run in
the copy with ``pytest -x``, and the file is put back (with its modification time,
so numba's cache of the unmutated kernels stays valid). A mutant in
``simulator/kernels.py`` compiles into a numba cache folder of its own.

Outcomes: ``killed`` (a test failed: good), ``SURVIVED`` (every test passed: a
test is missing), ``timeout`` (counted as killed, but look), ``STALE`` (the
original text is no longer in the file, or is there more than once: retarget the
entry). With ``--baseline`` the union of the selected tests first runs unmutated,
so a kill cannot be an already failing test. The exit status is 1 if any mutant
survived or is stale.

Mutations are data: to add one, append a ``Mutant`` with the file, the exact
original text (unique in that file), the mutated text and the tests to run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# the quickest and most pointed file first: -x stops at the first failure
THEORY_TESTS = ("tests/simulator/test_theory_independent.py", "tests/simulator/test_theory.py")
# quickest first (-x stops at the first failure): whole float32 networks against the
# twin, every kernel against its twin, then the network contract (twin and finite
# differences in float64)
KERNEL_TESTS = ("tests/simulator/test_float32_network.py", "tests/simulator/test_kernels.py",
                "tests/simulator/test_network.py")
LABEL_TESTS = ("tests/ui/test_labels.py", "tests/ui/test_views.py")
UNDO_TESTS = ("tests/ui/test_undo_roundtrips.py", "tests/ui/test_commands.py")
DIAGNOSIS_TESTS = ("tests/simulator/test_diagnosis_thresholds.py",
                   "tests/simulator/test_diagnosis.py")


@dataclass(frozen=True)
class Mutant:
    name: str
    group: str
    file: str  # relative to the project root
    original: str  # exact text, must occur exactly once in the file
    mutated: str
    tests: tuple[str, ...]  # pytest arguments: files, node ids, "-k", "expr", ...
    why: str = ""


MUTANTS: list[Mutant] = [
    # -- the five of issue 14 -----------------------------------------------------------
    Mutant(
        "theory_chi_wrong_layer", "theory", "simulator/theory.py",
        "chi[i] = sigma_w2[i + 1] * mean_dphi2(",
        "chi[i] = sigma_w2[i] * mean_dphi2(",
        THEORY_TESTS,
        "chi for hidden layer k with layer k's weight scale instead of layer k+1's"),
    Mutant(
        "flow_prediction_reversed", "ui", "ui/views/flow.py",
        "pred = logs[-1] + np.log10(np.asarray(mf.predicted_ratio, dtype=np.float64))",
        "pred = logs[0] + np.log10(np.asarray(mf.predicted_ratio, dtype=np.float64))[::-1]",
        LABEL_TESTS + ("-k", "flow"),
        "the mean-field line anchored at the first layer and drawn reversed"),
    Mutant(
        "fmt_sci_fixed_point", "ui", "ui/views/colors.py",
        'return f"{v:.1e}"',
        'return f"{v:.1f}"',
        LABEL_TESTS,
        "every small number label reads 0.0"),
    Mutant(
        "undo_activation_all_restores_layer_1", "undo", "ui/commands.py",
        '''            return self._spec_edit(f"All layers: {activation}",
                                   lambda sim: sim.set_activation_all(activation))''',
        '''            first = self._spec().hidden[0].activation
            return self._push(f"All layers: {activation}",
                              lambda sim: sim.set_activation_all(activation),
                              lambda sim: sim.set_activation_all(first))''',
        UNDO_TESTS,
        "undo of an all-layers activation change gives every layer layer 1's activation"),
    # One threshold comparison of simulator/diagnosis.py: if the diagnosis is rewritten,
    # point ``original`` at one of its comparisons again (this entry then reads STALE).
    Mutant(
        "diagnosis_threshold_inclusive", "diagnosis", "simulator/diagnosis.py",
        "    if r_low < VANISHING_RATIO * hold:",
        "    if r_low <= VANISHING_RATIO * hold:",
        DIAGNOSIS_TESTS,
        "a diagnosis threshold moved from < to <=: only a test exactly at it can tell"),
    # -- undo ----------------------------------------------------------------------------
    Mutant(
        "undo_prelu_slope_not_restored", "undo", "ui/commands.py",
        'if before.activation == "prelu" and after.activation != "prelu":',
        'if before.activation == "prelu" and after.activation == "prelu":',
        UNDO_TESTS,
        "undo of an activation change away from PReLU draws fresh slopes"),
    Mutant(
        "undo_layer_above_narrowed_not_restored", "undo", "ui/commands.py",
        "if nw[k] < ow[k] or nw[k - 1] < ow[k - 1]:",
        "if nw[k] < ow[k]:",
        UNDO_TESTS,
        "undo of a narrower layer forgets the rows the layer above lost"),
    Mutant(
        "undo_insert_restores_wrong_layer", "undo", "ui/commands.py",
        'sim.set_layer_params(state["next"], layer=position)',
        'sim.set_layer_params(state["next"], layer=position + 1)',
        UNDO_TESTS,
        "undo of an insert puts the next layer's weights one layer too high"),
    Mutant(
        "undo_delete_forgets_skips", "undo", "ui/commands.py",
        '''            sim.set_layer_params(state["next"], layer=k + 1)
            sim.set_skips(old.skips)''',
        '''            sim.set_layer_params(state["next"], layer=k + 1)''',
        UNDO_TESTS,
        "undo of a delete does not bring back the skip links the delete removed"),
    Mutant(
        "undo_projection_reshaped_not_restored", "undo", "ui/commands.py",
        "if name not in after or after[name].shape != v.shape})",
        "if name not in after})",
        UNDO_TESTS,
        "undo of a width change keeps the freshly drawn skip projection"),
    # -- theory --------------------------------------------------------------------------
    Mutant(
        "theory_glorot_fan_swapped", "theory", "simulator/theory.py",
        "return g2 * 2.0 * fan_in / (fan_in + fan_out)",
        "return g2 * 2.0 * fan_out / (fan_in + fan_out)",
        THEORY_TESTS),
    Mutant(
        "theory_prelu_he_slope", "theory", "simulator/theory.py",
        '''    if activation == "prelu":
        return PRELU_INIT_SLOPE''',
        '''    if activation == "prelu":
        return LEAKY_SLOPE''',
        THEORY_TESTS),
    # -- kernels -------------------------------------------------------------------------
    Mutant(
        "kernel_tanh_dphi_0.1pct_float32_only", "kernels", "simulator/kernels.py",
        "                dp[i, j] = 1.0 - t * t",
        "                dp[i, j] = (1.0 - t * t) * 1.001",
        ("tests/simulator/test_kernels.py", "tests/simulator/test_float32_network.py", "-k",
         "forward_and_backward_pass_match_twin and float32 or float32_gradients"),
        "a 0.1 % error in tanh': the float32 whole-network tests alone must catch it"),
    Mutant(
        "kernel_sigmoid_dphi", "kernels", "simulator/kernels.py",
        "                dp[i, j] = e * r * r",
        "                dp[i, j] = e * r",
        KERNEL_TESTS),
    Mutant(
        "kernel_batchnorm_backward_drops_xhat_term", "kernels", "simulator/kernels.py",
        "delta[i, j] = c * (B * gu[i, j] - s1 - xhat[i, j] * s2)",
        "delta[i, j] = c * (B * gu[i, j] - s1)",
        KERNEL_TESTS),
    Mutant(
        "kernel_batchnorm_running_var_biased", "kernels", "simulator/kernels.py",
        "unbiased = v * B / (B - 1) if B > 1 else v",
        "unbiased = v",
        KERNEL_TESTS),
    Mutant(
        "kernel_identity_skip_overwrites", "kernels", "simulator/kernels.py",
        "                        g_from[i, j] += g[i, j]",
        "                        g_from[i, j] = g[i, j]",
        KERNEL_TESTS),
    Mutant(
        "kernel_prelu_slope_grad_uses_gu", "kernels", "simulator/kernels.py",
        "dslopes[j] += g[i, j] * x",
        "dslopes[j] += gu[i, j] * x",
        KERNEL_TESTS),
    Mutant(
        "kernel_bias_grad_last_row_only", "kernels", "simulator/kernels.py",
        "            db[j] += delta[i, j]",
        "            db[j] = delta[i, j]",
        KERNEL_TESTS),
    Mutant(
        "kernel_softmax_delta_not_averaged", "kernels", "simulator/kernels.py",
        "delta[b, c] = (p - (1.0 if c == y else 0.0)) / B",
        "delta[b, c] = p - (1.0 if c == y else 0.0)",
        KERNEL_TESTS),
    Mutant(
        "kernel_mse_mean_over_batch_only", "kernels", "simulator/kernels.py",
        "inv = 2.0 / (B * K)",
        "inv = 2.0 / B",
        KERNEL_TESTS),
    Mutant(
        "kernel_adam_no_bias_correction", "kernels", "simulator/kernels.py",
        "step = lr * (v / c1) / (math.sqrt(v2 / c2) + eps)",
        "step = lr * v / (math.sqrt(v2) + eps)",
        KERNEL_TESTS),
    Mutant(
        "kernel_momentum_ema_form", "kernels", "simulator/kernels.py",
        "v = mu * m1[i] + g + wd * p",
        "v = mu * m1[i] + (1.0 - mu) * g + wd * p",
        KERNEL_TESTS),
    # -- files ---------------------------------------------------------------------------
    Mutant(
        "save_permission_error_escapes", "files", "simulator/experiment.py",
        '''    except OSError as e:
        raise ExperimentError(f"cannot be written''',
        '''    except FileNotFoundError as e:
        raise ExperimentError(f"cannot be written''',
        ("tests/simulator/test_experiment.py", "-k", "read_only"),
        "a folder the user may not write: a raw PermissionError instead of the message "
        "(only the read-only-folder test is run: it must catch this as root too)"),
]


def project_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, check=True, capture_output=True).stdout
    return [p for p in out.decode().split("\0") if p and (root / p).is_file()]


def copy_project(root: Path, dest: Path) -> None:
    for rel in project_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)


def run_tests(copy: Path, args: tuple[str, ...], cache_dir: Path, timeout: float):
    env = {**os.environ, "PYTHONPATH": str(copy), "QT_QPA_PLATFORM": "offscreen",
           "OPENBLAS_NUM_THREADS": "1", "NUMBA_CACHE_DIR": str(cache_dir),
           "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
           "-o", "addopts=", "--no-header", *args]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - t0, ""
    return r.returncode, time.monotonic() - t0, r.stdout + r.stderr


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line
    for line in output.splitlines():
        if "failed" in line or "error" in line:
            return line.strip()
    return output.strip().splitlines()[-1] if output.strip() else ""


def summary_line(output: str) -> str:
    lines = [s for s in output.strip().splitlines() if " in " in s and ("passed" in s or
                                                                          "failed" in s)]
    return lines[-1].strip("= ") if lines else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    ap.add_argument("--group", action="append", help="only these groups")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--baseline", action="store_true",
                    help="first run the selected tests unmutated (they must pass)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy")
    opts = ap.parse_args(argv)

    names = {m.name for m in MUTANTS}
    unknown = [n for n in opts.names if n not in names]
    if unknown:
        ap.error(f"unknown mutant(s): {', '.join(unknown)}")
    chosen = [m for m in MUTANTS if (not opts.names or m.name in opts.names)
              and (not opts.group or m.group in opts.group)]
    if opts.list:
        for m in chosen:
            print(f"{m.group:10s} {m.name:45s} {m.file}")
        return 0
    # mutants of the same file run together, kernels last: the unmutated kernels then
    # compile once, into the shared cache
    chosen.sort(key=lambda m: (m.file == "simulator/kernels.py", m.file))

    work = Path(tempfile.mkdtemp(prefix="gfl-mutants-"))
    copy = work / "project"
    results = []
    try:
        copy_project(ROOT, copy)
        shared_cache = work / "numba-original"
        print(f"copy of the project: {copy}", flush=True)
        if opts.baseline:
            union: list[str] = []
            for m in chosen:
                files = [a for a in m.tests if a.startswith("tests/")]
                union += [f for f in files if f not in union]
            code, secs, out = run_tests(copy, tuple(union), shared_cache, opts.timeout * 2)
            print(f"baseline ({len(union)} files): {'ok' if code == 0 else 'FAILED'} "
                  f"in {secs:.0f} s  {summary_line(out)}", flush=True)
            if code != 0:
                print(first_failure(out))
                print("fix the failing tests first: a kill would mean nothing")
                return 2
        for m in chosen:
            path = copy / m.file
            text = path.read_text(encoding="utf-8")
            count = text.count(m.original)
            if count != 1:
                why = "not found" if count == 0 else f"found {count} times"
                results.append((m, "STALE", 0.0, f"original text {why} in {m.file}"))
                print(f"STALE     {m.name}: original text {why} in {m.file}", flush=True)
                continue
            stat = path.stat()
            path.write_text(text.replace(m.original, m.mutated), encoding="utf-8")
            cache = (work / f"numba-{m.name}") if m.file == "simulator/kernels.py" \
                else shared_cache
            try:
                code, secs, out = run_tests(copy, m.tests, cache, opts.timeout)
            finally:
                path.write_text(text, encoding="utf-8")
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
                if cache != shared_cache:
                    shutil.rmtree(cache, ignore_errors=True)
            if code == "timeout":
                outcome, detail = "timeout", f"no result in {opts.timeout:.0f} s"
            elif code == 0:
                outcome, detail = "SURVIVED", summary_line(out)
            elif code == 5:
                outcome, detail = "STALE", "no tests collected: " + " ".join(m.tests)
            else:
                outcome, detail = "killed", first_failure(out)
            results.append((m, outcome, secs, detail))
            print(f"{outcome:9s} {m.name} ({secs:.0f} s): {detail}", flush=True)
    finally:
        if opts.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    survived = [r for r in results if r[1] == "SURVIVED"]
    stale = [r for r in results if r[1] == "STALE"]
    total = sum(r[2] for r in results)
    print(f"\n{len(results)} mutants in {total / 60:.1f} min: "
          f"{sum(r[1] in ('killed', 'timeout') for r in results)} killed, "
          f"{len(survived)} survived, {len(stale)} stale")
    for m, _, _, _ in survived:
        print(f"  SURVIVED {m.name}: {m.why or m.file} (tests: {' '.join(m.tests)})")
    for m, _, _, detail in stale:
        print(f"  STALE    {m.name}: {detail}")
    return 1 if survived or stale else 0


if __name__ == "__main__":
    sys.exit(main())
