"""Mutation check: break one setting's effect at a time and see which tests notice.

    python tests/mutations.py                  # every mutation; prints mutation -> caught by / NOT CAUGHT
    python tests/mutations.py --only remat,conv
    python tests/mutations.py --list

Each mutation is a small textual patch (file, old text, new text, how many times the old text occurs),
applied to a copy of the repository in a temporary folder, never in place; the tests named beside it run
there (PYTHONPATH points at the copy, so the copy's package is the one imported). A patch whose old text
is not found as many times as listed stops the script: the code moved, and the mutation must follow it.
The same tests first run on the unchanged copy and must pass, or a failure would mean nothing. The exit
status is 1 if any mutation is not caught.
"""

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    edits: tuple  # (old, new, count): `old` occurs exactly `count` times and every occurrence becomes `new`
    tests: tuple  # pytest node ids that should catch it
    what: str = ""


EFFECTS = "tests/test_effects.py::"
SYNTHESIS = "texsynth_jax/synthesis.py"
RUNNER = "texsynth_jax/runner.py"
WEB = "texsynth_jax/web.py"
RUNNER_TESTS = "tests/test_runner.py::"
WORKLIST_TESTS = "tests/test_worklist.py::"
CLOUD_TESTS = "tests/test_cloud.py::"

MUTATIONS = (
    Mutation("precision", SYNTHESIS,
             (('dtype = jnp.bfloat16 if config.precision == "bf16" else jnp.float32', "dtype = jnp.float32", 1),),
             (EFFECTS + "test_bf16_is_in_the_convolutions",), "always fp32"),
    Mutation("remat", SYNTHESIS, (("config.remat, padding)", "False, padding)", 1),),
             (EFFECTS + "test_remat_recomputes_in_the_compiled_gradient",), "never recompute"),
    Mutation("upsample", SYNTHESIS,
             (("resize(latent, config.size, config.upsample, config.tileable)",
               'resize(latent, config.size, "cubic", config.tileable)', 1),),
             (EFFECTS + "test_upsample_starts_the_next_scale",), "always cubic"),
    Mutation("coarsest_padding", "texsynth_jax/coarse_to_fine.py",
             (("padding=coarsest if k == 0 else config.padding)", "padding=config.padding)", 1),),
             (EFFECTS + "test_coarsest_padding_is_the_coarsest_scales_loss",), "every scale with --padding"),
    Mutation("coarsest_padding-size", "texsynth_jax/config.py",
             (("TORUS_PIXELS = 256 * 256", "TORUS_PIXELS = SMALL_PIXELS", 1),),
             (EFFECTS + "test_coarsest_padding_is_the_coarsest_scales_loss",), "the torus up to 128 px only"),
    Mutation("coarse_min_view", "texsynth_jax/config.py",
             (("if min(size) // factor >= self.coarse_min_view]", "]", 1),),
             ("tests/test_coarse_to_fine.py::test_coarse_scales_the_deepest_layer_barely_sees_are_left_out",),
             "every coarse scale kept"),
    Mutation("pyramid", SYNTHESIS,
             (("for shrunk in targets.get(terms.PYRAMID, ()):", "for shrunk in ():", 1),),
             ("tests/test_pyramid.py::test_the_loss_adds_each_halved_outputs_loss_against_the_halved_source",
              "tests/test_pyramid.py::test_a_real_photo_comes_out_nearer_at_half_size"), "the halved output unmatched"),
    Mutation("pyramid-guided", "texsynth_jax/terms.py",
             (("out[name].append(guided_targets(list(level), masks))",
               "out[name].append(guided_targets(list(level)[::-1], masks))", 1),),
             ("tests/test_pyramid.py::test_blended_guided_and_partial_targets_carry_every_level",),
             "a guided output's halved copy with the regions' statistics swapped"),
    Mutation("source_scale", SYNTHESIS,
             (("return resize_source(source, scaled_size(np.shape(source)[:2], scale))",
               "return source", 1),),
             ("tests/test_source_scale.py::test_source_scale_resizes_the_source_before_its_statistics",),
             "the source's statistics at its own size"),
    Mutation("blend-ignored", RUNNER, (("    if config.blend:\n        every = ", "    if False:\n        every = ", 1),),
             ("tests/test_blend.py::test_cli_blend_weights_one_and_zero_are_a_single_source_run",),
             "the job runs the main source alone"),
    Mutation("blend-gram", "texsynth_jax/terms.py",
             (("sum(w * leaf for w, leaf in zip(weights, leaves))", "leaves[0]", 1),),
             ("tests/test_blend.py::test_each_term_blends_as_it_documents",
              "tests/test_blend.py::test_a_sweep_of_weights_moves_the_outputs_from_one_source_to_the_other"),
             "Grams of the first source only"),
    Mutation("guide-ignored", "texsynth_jax/terms.py",
             (("        if masks is not None and term.masked_loss is not None:", "        if False:", 1),
              ("        return term.loss(features, image, targets[name], layer_weights, key)",
               "        return term.loss(features, image, targets[name][0] if masks is not None else targets[name], "
               "layer_weights, key)", 1)),
             ("tests/test_guide.py::test_two_photos_in_two_regions_each_near_its_own",),
             "a guided run matches the first region's statistics everywhere"),
    Mutation("guide-unnormalised", "texsynth_jax/losses.py",
             (("    return gram_matrix(weighted) * (mask.size / jnp.maximum(jnp.sum(mask), 1e-6))",
               "    return gram_matrix(weighted)", 1),),
             ("tests/test_guide.py::test_masked_statistics_equal_dense_references",
              "tests/test_guide.py::test_two_photos_in_two_regions_each_near_its_own"),
             "a region's Gram is not divided by its mass (small regions shrink)"),
    Mutation("guide-blocks", "texsynth_jax/guide.py",
             (("            a, b = _area_matrix(h, h // f, f), _area_matrix(w, w // f, f)",
               "            a, b = _area_matrix(h, h // f, f)[::-1], _area_matrix(w, w // f, f)", 1),),
             ("tests/test_guide.py::test_masked_statistics_equal_dense_references",
              "tests/test_guide.py::test_two_photos_in_two_regions_each_near_its_own"),
             "masks reach the layers upside down"),
    Mutation("fingerprint-files", "texsynth_jax/records.py",
             (("    others = [weights.file_sha256(path) for path in target_files(config)]", "    others = []", 1),),
             ("tests/test_blend.py::test_a_checkpoint_fingerprint_covers_the_blended_files",),
             "a checkpoint of another blend photo would be continued"),
    Mutation("colors-luminance", RUNNER,
             (("    statistics = colors.grey if _luminance_only(config) else lambda x: x\n    image = statistics(image)",
               "    statistics = lambda x: x\n    image = statistics(image)", 1),),
             ("tests/test_colors.py::test_cli_colors_from_a_palette_and_from_the_source",),
             "with a palette the structure is synthesised in colour, not from luminance"),
    Mutation("colors-ignored", "texsynth_jax/colors.py", (("    if not config.colors:\n", "    if True:\n", 1),),
             ("tests/test_colors.py::test_cli_colors_from_a_palette_and_from_the_source",), "outputs as synthesised"),
    Mutation("off-cpu-sort", "texsynth_jax/losses.py",
             (("default=lambda x: jnp.sort(x, axis=0)", "default=lambda x: x", 1),),
             (EFFECTS + "test_off_cpu_sorts_sort",), "the XLA sort returns its input unsorted"),
    Mutation("off-cpu-ranks", "texsynth_jax/losses.py",
             (("return jnp.argsort(jnp.argsort(x, axis=0), axis=0).astype(jnp.int32)",
               "return jnp.argsort(x, axis=0).astype(jnp.int32)", 1),),
             (EFFECTS + "test_off_cpu_sorts_sort",), "the XLA ranks are the order instead"),
    Mutation("padding", SYNTHESIS, (("spec, config, config.padding)", 'spec, config, "reflect")', 2),
                                    ('"circular" if config.tileable else config.padding',
                                     '"circular" if config.tileable else "reflect"', 1)),
             (EFFECTS + "test_loss_follows_the_network_settings",), "always reflect (the default)"),
    Mutation("tileable-loss", SYNTHESIS, (('"circular" if config.tileable else config.padding', "config.padding", 1),),
             (EFFECTS + "test_loss_follows_the_network_settings",), "the output's convolutions not circular"),
    Mutation("tileable-resize", SYNTHESIS, (("config.upsample, config.tileable)", "config.upsample, False)", 1),),
             (EFFECTS + "test_upsample_starts_the_next_scale",), "scales enlarged as if not periodic"),
    Mutation("pooling", SYNTHESIS, (("else layers, config.pooling,", 'else layers, "avg",', 1),),
             (EFFECTS + "test_loss_follows_the_network_settings",), "always avg"),
    Mutation("init", SYNTHESIS, (('elif init == "uniform":', "elif False:", 1),),
             ("tests/test_synthesis.py::test_starting_noise",), "always normal"),
    Mutation("init_scale", SYNTHESIS, ((" scale * ", " 0.01 * ", 3),),
             ("tests/test_synthesis.py::test_starting_noise",), "always 0.01"),
    Mutation("init-auto", "texsynth_jax/config.py",
             (('return "uniform", UNIFORM_SCALE', 'return "normal", self.init_scale', 1),),
             ("tests/test_config.py::test_the_default_start_goes_by_the_output_size",), "auto always the paper's grey"),
    Mutation("init-auto-scales", "texsynth_jax/coarse_to_fine.py", ((", init=init, init_scale=init_scale,", ",", 1),),
             ("tests/test_synthesis.py::test_every_scale_starts_as_the_whole_output_would",),
             "each scale's start by its own size"),
    Mutation("init-content", SYNTHESIS, (('scale = scale if init == "normal" else INIT_SCALE', "pass", 1),),
             ("tests/test_synthesis.py::test_a_content_start_keeps_its_small_noise",),
             "a content start takes the uniform start's spread"),
    Mutation("history", SYNTHESIS,
             (("optimizers.make(config.optimizer, config.history)", "optimizers.make(config.optimizer, 20)", 3),),
             (EFFECTS + "test_history_and_optimizer_shape_the_state",), "always 20"),
    Mutation("layer_weights", SYNTHESIS,
             (("dict(zip(config.layers, config.layer_weights))", "dict.fromkeys(config.layers, 1.0)", 1),),
             (EFFECTS + "test_loss_follows_the_network_settings",), "every layer weighs 1"),
    Mutation("projections", SYNTHESIS,
             (('state.step + 1 if config.projections == "fresh" else 0', "0", 1),),
             ("tests/test_terms.py::test_projections_fixed_keep_the_key_and_fresh_redraw_it",),
             "fresh draws the fixed key"),
    Mutation("projections-refresh", SYNTHESIS,
             (('if config.projections == "fresh" and terms.is_random(config.loss_weights):', "if False:", 1),),
             ("tests/test_terms.py::test_fresh_projections_line_search_compares_one_loss",),
             "fresh projections compare against the last iteration's loss"),
    Mutation("conv", SYNTHESIS,
             (("conv_lib.select(config.conv)", 'conv_lib.select("lax")', 1),),
             (EFFECTS + "test_conv_strategy_is_the_program",), "always lax"),
    Mutation("optimizer", SYNTHESIS,
             (("optimizers.make(config.optimizer, config.history)", 'optimizers.make("lbfgs", config.history)', 3),),
             (EFFECTS + "test_history_and_optimizer_shape_the_state",), "always lbfgs"),
    Mutation("loss", "texsynth_jax/terms.py", (("    return sum(w * term_loss(name)", "    return sum(term_loss(name)", 1),),
             ("tests/test_terms.py::test_terms_compose_by_weight",), "every term weighs 1"),
    # The job layer's promises about the user's files and its checks before the first iteration.
    Mutation("inputs-kept", RUNNER,
             (("    outputs.check_inputs_kept([item[0] for item in work], options.output_dir, files(plan))\n", "", 1),),
             (RUNNER_TESTS + "test_an_output_never_replaces_an_input",), "an output may replace an input"),
    Mutation("overwrite-foreign", "texsynth_jax/outputs.py",
             (("foreign = [n for n in taken if n not in owned]", "foreign = []", 1),),
             (RUNNER_TESTS + "test_overwrite_replaces_only_the_products_own_files",), "--overwrite replaces any file"),
    Mutation("folder-skips-outputs", "texsynth_jax/jobs.py", (("names if n not in ours)", "names)", 1),),
             (RUNNER_TESTS + "test_a_folder_input_skips_the_products_outputs_run_after_run",),
             "a folder input takes the product's outputs as sources"),
    Mutation("stalled", RUNNER,
             (('status = "stalled" if _stalled(tracker.history(), engine.offsets) else "complete"', 'status = "complete"', 1),),
             (RUNNER_TESTS + "test_a_run_that_made_nothing_ends_stalled_not_complete",), "nothing made, 'complete'"),
    Mutation("resume-preflight", RUNNER,
             (("_resume_point(job._replace(engine=engine_for(src.config)), src, image_io.load_image(src.path)[0])",
               "pass", 1),),
             (RUNNER_TESTS + "test_a_damaged_checkpoint_of_a_later_source_stops_the_job_before_the_first",),
             "a later source's checkpoint read only when its turn comes"),
    Mutation("judge-preflight", RUNNER,
             (("                evaluate.check_judgeable(src.size, src.config.size)", "                pass", 1),),
             (RUNNER_TESTS + "test_sizes_the_judge_cannot_take_are_refused_before_the_first_iteration",),
             "the judge's sizes found after the images are written"),
    Mutation("eta-scales", "texsynth_jax/progress.py",
             (("left += (self.scales[k][0] - begin) * self._pixels(k) / self._pixels(scale)",
               "left += (self.scales[k][0] - begin)", 1),),
             (RUNNER_TESTS + "test_the_eta_counts_the_scales_to_come_and_labels_the_loss",),
             "the ETA prices later scales at this scale's cost"),
    # Work files (worklist.py) and their results manifests (results.py).
    Mutation("worklist-all-errors", "texsynth_jax/worklist.py", (("if len(errors) == MAX_ERRORS:", "if errors:", 1),),
             (WORKLIST_TESTS + "test_a_work_file_reports_every_malformed_line_with_its_number",),
             "only the first malformed line reported"),
    Mutation("worklist-settings", "texsynth_jax/records.py",
             (("item_config = jobs.item_config(work_item, config)", "item_config = config", 1),),
             (WORKLIST_TESTS + "test_two_processes_run_a_work_file_of_mixed_settings",),
             "every item runs with the job's settings"),
    Mutation("worklist-merge", "texsynth_jax/results.py",
             (("    count = merge(folder, work, processes)", "    count = 0", 1),),
             (WORKLIST_TESTS + "test_two_processes_run_a_work_file_of_mixed_settings",
              WORKLIST_TESTS + "test_resume_goes_by_the_manifest_and_the_files"), "no merged results.jsonl"),
    Mutation("worklist-wait", "texsynth_jax/results.py",
             (("said, cut = _wait(client, key, processes, timeout, should_stop)", "said, cut = {}, False", 1),),
             (WORKLIST_TESTS + "test_two_processes_run_a_work_file_of_mixed_settings",),
             "process 0 merges without waiting for the other hosts"),
    Mutation("worklist-resume-files", "texsynth_jax/results.py",
             ((" and not missing(line, folder)", "", 1),),
             (WORKLIST_TESTS + "test_resume_goes_by_the_manifest_and_the_files",),
             "--resume skips an item whose image is gone"),
    Mutation("worklist-resume-manifest", RUNNER,
             (("return finished and (src.item is None or manifest.complete(", "return finished or (", 1),),
             (WORKLIST_TESTS + "test_resume_goes_by_the_manifest_and_the_files",),
             "--resume skips an item by its record and file names alone"),
    Mutation("bucket-half-upload", "texsynth_jax/storage.py",
             (("    target, contents = _epath(path), io.BytesIO()\n    yield contents\n",
               "    target, contents = _epath(path), io.BytesIO()\n    try:\n        yield contents\n    finally:\n"
               "        target.write_bytes(contents.getvalue())\n", 1),),
             (CLOUD_TESTS + "test_storage_reads_writes_lists_and_never_leaves_half_an_object",),
             "a write into a bucket that fails halfway uploads what it had"),
    Mutation("bucket-probe", "texsynth_jax/outputs.py",
             (("        return _check_bucket(path, names, overwrite)", "        return None", 1),),
             (CLOUD_TESTS + "test_a_bucket_that_cannot_be_written_or_read_is_one_line_before_any_work",),
             "a bucket that cannot be written is found only at the first write, after the work"),
    Mutation("preempt-checkpoint", RUNNER,
             (("(options.checkpoint_every or\n                                                                              "
               "self.stop.preempted))", "options.checkpoint_every)", 1),),
             ("tests/test_run_scale.py::test_preempted_then_killed_run_resumes_to_the_uninterrupted_result",),
             "SIGTERM without --checkpoint_every leaves no checkpoint"),
    Mutation("cluster-detection", "texsynth_jax/cli.py",
             (("    return next((kind.name for kind in kinds if not kind.opt_in_only_method and kind.is_env_present()), "
               "None)", "    return None", 1),),
             ("tests/test_run_scale.py::test_two_processes_split_a_batch_job",),
             "a process started by Slurm does not find its job"),
    Mutation("device-xla-account", RUNNER,
             (("        budget.check_programs(engine_for(group_config), budget.device_memory_bytes(device),",
               "        engine_for(group_config), (budget.device_memory_bytes(device),", 1),),
             ("tests/test_hardening.py::test_on_a_device_with_memory_of_its_own_xla_account_decides",),
             "on a GPU or TPU the job trusts the CPU-fitted model alone"),
    Mutation("fill-no-detail", "texsynth_jax/fill.py",
             (("DETAIL_SIGMA = 1.0", "DETAIL_SIGMA = 0.0", 1),),
             ("tests/test_fill.py::test_a_filled_hole_does_not_show",),
             "each enlarged scale meets the sharp photo in a step: the border shows"),
    Mutation("fill-loss-ignores-canvas", "texsynth_jax/fill.py",
             (("    return keep * known + (1.0 - keep) * image", "    return image", 1),),
             ("tests/test_fill.py::test_kept_pixels_stay_through_the_engine_and_one_program_serves_every_mask",),
             "the loss sees the synthesised image alone: the kept pixels move"),
    Mutation("fill-whole-photo-statistics", RUNNER,
             (("    own = canvas is not None and canvas.own and canvas.make is not None", "    own = False", 1),),
             ("tests/test_fill.py::test_cli_hole_alpha_extend_tile_record_and_errors",),
             "a hole's statistics include the removed object"),
    Mutation("content-loss-unscaled", "texsynth_jax/content.py",
             (("            \"weight\": jnp.asarray(weight, jnp.float32) * unit / scale}",
               "            \"weight\": jnp.asarray(weight, jnp.float32) / scale}", 1),),
             ("tests/test_content.py::test_the_loss_is_pytorch_gatys_2016",),
             "the content weight no longer in the texture loss's units: its meaning changes with the network"),
    Mutation("content-start-unsqueezed", "texsynth_jax/content.py",
             (("MARGIN = 0.2", "MARGIN = 0.001", 1),),
             ("tests/test_content.py::test_the_transfer_is_within_1_1x_of_pytorch_at_equal_iterations",),
             "the photo's black and white pixels start in the sigmoid's flat tails and barely move"),
    Mutation("content-weight-0-still-content", "texsynth_jax/cli.py",
             (("            if config.content and config.content_weight and not FLAGS",
               "            if config.content and not FLAGS", 1),),
             ("tests/test_content.py::test_weight_0_on_the_command_line_is_the_texture_alone_bit_for_bit",),
             "weight 0 still drops the coarse scales a content photo's layout needs"),
    Mutation("web-paper-mode-ignored", WEB,
             (("    values = dict(PAPER_MODE) if settings.mode == \"paper\" else {}", "    values = {}", 1),),
             ("tests/test_web.py::test_page_settings_become_the_config",),
             "the page's paper mode runs the base settings"),
    Mutation("web-command-drops-settings", WEB,
             (("        if value == getattr(default, field.name):", "        if field.name != \"size\":", 1),),
             ("tests/test_web.py::test_command_carries_every_changed_setting",
              "tests/test_web.py::test_page_run_writes_the_cli_files_and_reuses_its_programs"),
             "the command the page shows makes other images"),
    Mutation("web-side-unchecked", WEB,
             (("    if max(height, width) > limits.max_side:", "    if False:", 1),),
             ("tests/test_web.py::test_bad_uploads_are_one_line_and_write_nothing",),
             "a photo of any size in pixels is taken"),
    Mutation("web-early-strokes-ignored", WEB,
             (("            if any(shape != fill_image.shape[:2] for shape in painted):", "            if False:", 1),),
             ("tests/test_web.py::test_bad_uploads_are_one_line_and_write_nothing",),
             "strokes painted before the image showed are dropped without a word"),
    Mutation("web-faint-strokes-lost", WEB,
             (("layer.max(axis=2)) > 0", "layer.max(axis=2)) > 128", 1),),
             ("tests/test_web.py::test_mask_from_painted_layers",),
             "a stroke's soft edge is left out of the mask"),
    Mutation("web-stop-ignored", WEB,
             (("should_stop=stop.is_set, on_progress", "should_stop=None, on_progress", 1),),
             ("tests/test_web.py::test_stop_keeps_what_the_run_reached",),
             "Stop does nothing: the run goes on"),
    Mutation("web-two-runs-at-once", WEB,
             (("concurrency_limit=1,\n", "concurrency_limit=2,\n", 1),),
             ("tests/test_web.py::test_browser_one_run_at_a_time_the_next_visitor_queued_and_stop",),
             "two syntheses share the device: the second visitor is not queued"),
    Mutation("web-map-soft-edges-kept", WEB,
             (("        out[stroke] = palette[nearest[stroke]].astype(np.uint8)", "        out[stroke] = layer[stroke, :3]", 1),),
             ("tests/test_web.py::test_map_from_painted_layers_snaps_to_the_brush_colours",),
             "a stroke's soft edge becomes a region of its own colour"),
)


def copy_repository(dest: Path) -> None:
    """The files git knows (tracked, and untracked but not ignored) into `dest`; a plain copy without git."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                check=True, capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git", "__pycache__", ".venv"))
        return
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


class PatchError(ValueError):
    pass


def patched(text: str, mutation: Mutation) -> str:
    """`text` (of mutation.path) with the mutation's edits; PatchError if an old text is not found as listed."""
    for old, new, count in mutation.edits:
        found = text.count(old)
        if found != count:
            raise PatchError(f"mutation {mutation.name}: {mutation.path} has {found} copies of {old!r}, not {count}; "
                             "the code moved: update the patch in tests/mutations.py")
        text = text.replace(old, new)
    return text


def run_tests(copy: Path, tests, timeout: float) -> tuple[int | None, list[str], str]:
    """(exit status or None on timeout, failed or erroring node ids, output tail) of pytest in `copy`."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(copy), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-rfE", *tests]
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return None, [], (e.stdout or b"")[-2000:].decode(errors="replace") if isinstance(e.stdout, bytes) else ""
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.MULTILINE)
    return done.returncode, sorted(set(failed)), (done.stdout + done.stderr)[-3000:]


def check_import(copy: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(copy))
    where = subprocess.run([sys.executable, "-c", "import texsynth_jax; print(texsynth_jax.__file__)"], cwd=copy,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(copy.resolve()):
        sys.exit(f"error: the copy imports texsynth_jax from {where}, not from itself; uninstall that package "
                 "or install the project in editable mode from this folder")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated mutation names (default: all)")
    parser.add_argument("--tests", default="", help="comma-separated pytest ids to run for every mutation instead "
                        "of each one's own (e.g. tests/ for the whole suite)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per pytest run")
    args = parser.parse_args()
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:20} {m.path}: {m.what}")
        return 0
    names = [n for n in args.only.split(",") if n]
    unknown = set(names) - {m.name for m in MUTATIONS}
    if unknown:
        sys.exit(f"error: unknown mutation(s) {sorted(unknown)}; see --list")
    chosen = [m for m in MUTATIONS if not names or m.name in names]
    override = tuple(t for t in args.tests.split(",") if t)
    tests_of = lambda m: override or m.tests

    with tempfile.TemporaryDirectory(prefix="texsynth_mutations_") as folder:
        copy = Path(folder)
        copy_repository(copy)
        check_import(copy)
        originals = {m.path: (copy / m.path).read_text() for m in chosen}
        try:
            for m in chosen:  # every patch applies before anything runs
                patched(originals[m.path], m)
        except PatchError as e:
            sys.exit(f"error: {e}")
        baseline = sorted({t for m in chosen for t in tests_of(m)})
        start = time.time()
        code, failed, tail = run_tests(copy, baseline, args.timeout)
        if code != 0:
            print(tail)
            sys.exit(f"error: the tests fail (or time out) without any mutation: {failed}; fix them first")
        print(f"baseline: {len(baseline)} test ids pass unchanged ({time.time() - start:.0f} s)", flush=True)
        rows = []
        for m in chosen:
            start = time.time()
            (copy / m.path).write_text(patched(originals[m.path], m))
            try:
                code, failed, tail = run_tests(copy, tests_of(m), args.timeout)
            finally:
                (copy / m.path).write_text(originals[m.path])
            if code is None:
                verdict = "caught (timed out)"
            elif failed:
                verdict = ", ".join(f.replace("tests/", "", 1) for f in failed)
            elif code != 0:
                verdict = f"caught (pytest exit {code})"
            else:
                verdict = "NOT CAUGHT"
            rows.append((m, verdict))
            print(f"{m.name:20} {time.time() - start:5.0f} s  {verdict}", flush=True)

    width = max(len(m.name) for m, _ in rows)
    print(f"\n{'mutation':{width}}  effect removed -> caught by (test ids) / NOT CAUGHT")
    for m, verdict in rows:
        print(f"{m.name:{width}}  {m.what} -> {verdict}")
    missed = [m.name for m, verdict in rows if verdict == "NOT CAUGHT"]
    print(f"\n{len(rows) - len(missed)} of {len(rows)} mutations caught" + (f"; NOT CAUGHT: {', '.join(missed)}"
                                                                        if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
