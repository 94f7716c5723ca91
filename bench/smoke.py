"""Every benchmark's --smoke run, one after another in one process (tests/test_bench.py runs this).

    PYTHONPATH=. python bench/smoke.py [--weights FILE.h5] [--only speed,losses] [--json out.json]

One process, so JAX starts once and XLA's compilation cache (a temp folder) serves the programs that several
scripts share. Each script's printed output is kept; a script that raises is reported with its traceback and
the others still run. Exit code 1 if any failed.
"""

import argparse
import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
# The scripts whose figures README.md and docs/ cite, and the one that lays out their pictures.
# XLA:CPU's backend optimisation level 1 compiles a quarter faster than the default and runs as fast at these
# sizes (level 0 compiles faster still, but runs 20x slower); the older loop emitters instead of the fusion
# emitters compile a fifth faster again. As tests/conftest.py does.
FAST_COMPILE = ("--xla_backend_optimization_level=1", "--xla_cpu_use_fusion_emitters=false")
SCRIPTS = ("speed", "profile", "large", "scale", "dispatch", "optimizer", "quality", "schedules", "losses",
           "diversity", "convergence", "versus_paper", "tiles", "borders", "seed_batch", "throughput", "steering",
           "fill", "content", "figures")


def load(name: str):
    """bench/<name>.py as a module (by path, under bench_<name>: profile would shadow the standard library's)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=None, help="converted VGG-16 file (default: the library's default)")
    parser.add_argument("--only", default="", help="comma-separated script names (default: all)")
    parser.add_argument("--full_compile", action="store_true", help="XLA's usual optimisation (slower to compile)")
    parser.add_argument("--json", default=None, help="write {script: {ok, seconds, cpu_seconds, compiles, output}} here")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCRIPTS)
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        sys.exit(f"error: unknown script(s) {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")

    # A smoke run checks code, not speed: spend less on optimising the compiled code.
    if not args.full_compile:
        os.environ["XLA_FLAGS"] = " ".join([os.environ.get("XLA_FLAGS", ""), *FAST_COMPILE]).strip()
    import jax

    from common import CompileCounter

    jax.config.update("jax_num_cpu_devices", 2)  # scale.py shards over 2 virtual devices
    jax.config.update("jax_compilation_cache_dir",  # the tests' shared one when they run it
                      os.environ.get("JAX_COMPILATION_CACHE_DIR") or tempfile.mkdtemp(prefix="texsynth_smoke_xla_"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    results = {}
    for name in names:
        argv = ["--smoke"] + (["--weights", args.weights] if args.weights and name != "figures" else [])
        output, start, cpu, compiles = io.StringIO(), time.perf_counter(), time.process_time(), CompileCounter()
        try:
            with contextlib.redirect_stdout(output):
                load(name).main(argv)
            ok = True
        except (Exception, SystemExit):  # a script's sys.exit("error: ...") is a failure too
            ok = False
            output.write(traceback.format_exc())
        results[name] = {"ok": ok, "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                         "compiles": compiles.count, "output": output.getvalue()}
        print(f"{name}: {'ok' if ok else 'FAILED'} in {results[name]['seconds']:.1f} s "
              f"({results[name]['cpu_seconds']:.1f} s of CPU, {compiles.count} XLA compilations)", flush=True)
        if not ok:
            print(output.getvalue()[-3000:], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if all(r["ok"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
