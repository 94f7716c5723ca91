"""config.py: types held at construction, normalisation, the recommended defaults, settings that cannot
work refused, and every message naming its field and a valid value. No JAX program is compiled here."""

import dataclasses
import os
import re

import numpy as np
import pytest

from texsynth_jax import RunOptions, SynthesisConfig, config as config_lib
from texsynth_jax.config import setting

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_LAYERS = config_lib.PAPER_MODE["layers"]  # five layers, for the tests that give five weights
FIELDS = {f.name: (cls, f) for cls in (SynthesisConfig, RunOptions) for f in dataclasses.fields(cls)}


# Types: what the annotation says, and nothing else.

@pytest.mark.parametrize("cls, name", [(SynthesisConfig, "remat"), (SynthesisConfig, "tileable"),
                                       (RunOptions, "judge"), (RunOptions, "resume"), (RunOptions, "overwrite")])
@pytest.mark.parametrize("value", ["false", "true", 0, 1, None, np.bool_(True)])
def test_bool_fields_take_only_bools(cls, name, value):
    with pytest.raises(ValueError, match=rf"^{name}=.* is not a bool; give a bool like True or False$"):
        cls(**{name: value})


@pytest.mark.parametrize("cls, name", [(SynthesisConfig, "iterations"), (SynthesisConfig, "history"),
                                       (RunOptions, "log_every"), (RunOptions, "save_every")])
@pytest.mark.parametrize("value", [2.0, "2", True, None, 2.5])
def test_int_fields_take_only_whole_numbers(cls, name, value):
    with pytest.raises(ValueError, match=rf"^{name}=.* is not a whole number; give a whole number like \d+$"):
        cls(**{name: value})


@pytest.mark.parametrize("value, words", [("0.1", "is not a number"), (True, "is not a number"),
                                          (float("nan"), "is not finite"), (float("inf"), "is not finite"),
                                          (None, "is not a number")])
def test_float_fields_take_finite_numbers(value, words):
    with pytest.raises(ValueError, match=rf"^init_scale=.* {words}; give a finite number like 0.01$"):
        SynthesisConfig(init_scale=value)


def test_numbers_are_stored_as_their_field_says():
    config = SynthesisConfig(init="normal", init_scale=0, iterations=np.int64(3), layers=PAPER_LAYERS,
                             layer_weights=[1, np.float32(2), 3, 4, 5])
    assert type(config.init_scale) is float and type(config.iterations) is int
    assert config.layer_weights == (1.0, 2.0, 3.0, 4.0, 5.0) and {type(w) for w in config.layer_weights} == {float}
    assert config == SynthesisConfig(init="normal", init_scale=0.0, iterations=3, layers=PAPER_LAYERS,
                                    layer_weights=(1.0, 2.0, 3.0, 4.0, 5.0))


@pytest.mark.parametrize("kwargs, words", [
    (dict(pooling=1), "pooling=1 is not text"), (dict(pooling="median"), "pooling='median' is unknown; use one of avg, max"),
    (dict(layers=("conv1_1", 2)), "layers=.* has 2, which is not text"),
    (dict(layers=PAPER_LAYERS, layer_weights=(1, "x", 1, 1, 1)), "layer_weights=.* has 'x', which is not a number"),
    (dict(size=(64, 64.0)), r"size=\(64, 64.0\) has 64.0, which is not a whole number"),
    (dict(size=(64, 64, 3)), "size=.* has 3 values, not 2; give comma-separated whole numbers like 256 or 256,384"),
    (dict(size=64.0), "size=64.0 is not a tuple of whole numbers"),
    (dict(coarse_iterations={100, 60}), "coarse_iterations=.* is not a tuple of whole numbers"),
])
def test_elements_and_choices(kwargs, words):
    with pytest.raises(ValueError, match=words):
        SynthesisConfig(**kwargs)


def test_run_options_are_held_to_their_types_too():
    with pytest.raises(ValueError, match="mesh='gpu' is unknown; use one of auto, seeds, space, none"):
        RunOptions(mesh="gpu")
    with pytest.raises(ValueError, match="output_dir=3 is not text"):
        RunOptions(output_dir=3)
    assert RunOptions(judge=False).judge is False


def test_check_fields_is_generic():
    """Any frozen settings dataclass: normalised in place, refused with the field's example."""

    @dataclasses.dataclass(frozen=True)
    class Settings:
        sides: tuple[int, int] = setting((2, 3), "Two sides.")
        names: tuple[str, ...] = setting(("a",), "Names.", example="a,b")
        scale: float = setting(1.0, "A scale.")
        mode: str = setting("x", "A mode.", ("x", "y"))

        def __post_init__(self):
            config_lib.check_fields(self)

    s = Settings(sides=[4, 5], names="p, q", scale=2, mode="y")
    assert (s.sides, s.names, s.scale, s.mode) == ((4, 5), ("p", "q"), 2.0, "y") and type(s.scale) is float
    assert Settings(sides=7).sides == (7, 7)
    with pytest.raises(ValueError, match=r"^names='p,,q' has an empty item; give comma-separated items like a,b$"):
        Settings(names="p,,q")
    with pytest.raises(ValueError, match=r"^mode='z' is unknown; use one of x, y$"):
        Settings(mode="z")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.scale = 3.0  # normalising in place does not open the dataclass


# Normalisation: what a user naturally writes.

@pytest.mark.parametrize("size, expected", [(64, (64, 64)), ([64, 32], (64, 32)), ((64, 32), (64, 32)),
                                            ("64", (64, 64)), ("64,32", (64, 32)), (np.int32(48), (48, 48))])
def test_size(size, expected):
    config = SynthesisConfig(size=size)
    assert config.size == expected and type(config.size) is tuple and all(type(s) is int for s in config.size)


def test_lists_and_comma_text_become_tuples():
    config = SynthesisConfig(loss="gram:1,swd:0.1", layers="conv1_1, pool1", layer_weights=[1, 0.5],
                             coarse_iterations=[100, 60])
    assert config.loss == ("gram:1", "swd:0.1") and config.loss_weights == {"gram": 1.0, "swd": 0.1}
    assert config.layers == ("conv1_1", "pool1") and config.layer_weights == (1.0, 0.5)
    assert config.coarse_iterations == (100, 60)
    assert SynthesisConfig(loss="gram:1").loss == ("gram:1",)  # not iterated letter by letter
    assert SynthesisConfig(coarse_iterations="100,60").coarse_iterations == (100, 60)
    assert SynthesisConfig(coarse_iterations="").coarse_iterations == ()
    assert SynthesisConfig(coarse_iterations=100).coarse_iterations == (100,)
    # Normalised configs are equal and hash equal: one jit cache entry, not two.
    a, b = SynthesisConfig(size=64, loss="gram:1"), SynthesisConfig(size=(64, 64), loss=("gram:1",))
    assert a == b and hash(a) == hash(b)


# Defaults: the recommended settings, as texture.cfg runs them.

def test_defaults_are_the_recommended_settings():
    config = SynthesisConfig()
    assert config.coarse_iterations == (100, 60) and config.iterations == 0 and config.pyramid == 1
    assert config.scale_sizes == [(64, 64), (128, 128), (256, 256)] and config.total_iterations == 220
    assert config.loss_weights == {"gram": 1.0}
    assert config.layers == ("conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2", "conv3_1", "pool3", "conv4_1",
                             "pool4") and config.layer_weights == (1.0,) * 10
    # Every SynthesisConfig field that texture.cfg sets, it sets to the default.
    fields = {f.name: f for f in dataclasses.fields(SynthesisConfig)}
    with open(os.path.join(REPO, "texture.cfg")) as f:
        lines = [l.strip() for l in f if l.startswith("--")]
    named = {n: v for n, _, v in (l[2:].partition("=") for l in lines) if n in fields}
    assert not {"coarse_iterations", "iterations"} & set(named), named  # the schedule is the defaults'
    for name, text in named.items():
        assert config_lib.parse_value(fields[name], text) == getattr(config, name), name


def test_the_last_scale_runs_longer_on_small_outputs():
    """--iterations=0 (the default): 150 at up to 128x128 pixels, 60 above; a count given is the count."""
    last = lambda **kwargs: SynthesisConfig(**kwargs).scale_iterations[-1]
    assert [last(size=(n, n)) for n in (64, 128, 129, 256, 512)] == [150, 150, 60, 60, 60]
    assert last(size=(64, 256)) == 150 and last(size=(128, 256)) == 60  # by pixels, not by side
    assert last(size=(128, 128), iterations=20) == 20 and last(size=(256, 256), iterations=150) == 150
    assert SynthesisConfig(size=(128, 128)).total_iterations == 310
    assert SynthesisConfig(size=(128, 128), coarse_iterations=()).scale_iterations == [150]


def test_one_scale_is_said_explicitly():
    config = SynthesisConfig(coarse_iterations=(), iterations=300)
    assert config.scale_sizes == [(256, 256)] and config.total_iterations == 300


# Settings that cannot work.

@pytest.mark.parametrize("loss", ["gram:1e-300", "gram:1e-9", "gram:1,swd:1e-30", "gram:1e9", "gram:1e300"])
def test_loss_weights_float32_cannot_carry_are_refused(loss):
    with pytest.raises(ValueError, match=r"loss weight '\w+:1e[-+]?\d+': .* for float32 .*give a weight in 1e-08..1e\+08 "
                                         r"\(or 0 for off\), like \w+:1$"):
        SynthesisConfig(loss=loss)


def test_weights_at_the_bounds_and_zero_are_accepted():
    assert SynthesisConfig(loss="gram:1e-8,swd:1e8,spectrum:0", layer_weights=(1,) * 10).loss_weights == {
        "gram": 1e-8, "swd": 1e8, "spectrum": 0.0}
    assert SynthesisConfig(layers=PAPER_LAYERS, layer_weights=(1e-8, 1, 1, 1, 0)).layer_weights[0] == 1e-8


def test_layer_weights_and_their_products_are_bounded_too():
    with pytest.raises(ValueError, match=r"layer_weights=1e-30,1,1,1,1: 1e-30 is too small for float32"):
        SynthesisConfig(layers=PAPER_LAYERS, layer_weights=(1e-30, 1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"loss weight gram:0.0001 times layer weight 1e-05 is 1e-09, outside"):
        SynthesisConfig(loss="gram:1e-4", layers=PAPER_LAYERS, layer_weights=(1e-5, 1, 1, 1, 1))


@pytest.mark.parametrize("init, scale", [("normal", 25.0), ("normal", 0.51), ("normal", -0.01), ("uniform", 0.6)])
def test_init_scale_beyond_what_works_is_refused(init, scale):
    with pytest.raises(ValueError, match=rf"init_scale={scale:g} is out of range for init={init}: it is a spread "
                                         r"in \[0, 1\] pixel units \(not 0-255\), at most 0.5"):
        SynthesisConfig(init=init, init_scale=scale)


def test_init_scale_within_bounds():
    assert SynthesisConfig(init="normal", init_scale=0.5).init_scale == 0.5
    assert SynthesisConfig(init="uniform", init_scale=0.5).init_scale == 0.5


@pytest.mark.parametrize("size, start", [((128, 128), ("normal", 0.01)), ((64, 256), ("normal", 0.01)),
                                         ((128, 136), ("uniform", 0.4)), ((256, 256), ("uniform", 0.4))])
def test_the_default_start_goes_by_the_output_size(size, start):
    assert SynthesisConfig(size=size).start == start  # init=auto: up to 128x128 pixels grey, above uniform
    assert SynthesisConfig(size=size, init="normal").start == ("normal", 0.01)
    assert SynthesisConfig(size=size, init="uniform", init_scale=0.3).start == ("uniform", 0.3)


def test_a_spread_that_auto_would_not_use_is_refused():
    assert SynthesisConfig(size=(64, 64), init_scale=0.1).start == ("normal", 0.1)
    with pytest.raises(ValueError, match=r"^init_scale=0.1 goes unused: init=auto starts a 256x256 output from "
                                         r"uniform noise of half-width 0.4; give init=normal or init=uniform with it$"):
        SynthesisConfig(init_scale=0.1)


def test_history_beyond_any_use_names_history():
    with pytest.raises(ValueError, match=r"^history=10000000 is not in 1..1000: L-BFGS keeps"):
        SynthesisConfig(history=10_000_000)
    assert SynthesisConfig(history=1000).history == 1000


def test_iterations_over_all_scales_are_bounded():
    assert SynthesisConfig(coarse_iterations=(), iterations=1_000_000).total_iterations == 1_000_000
    with pytest.raises(ValueError, match=r"^1000160 iterations over all scales \(iterations=1000000, "
                                         r"coarse_iterations=100,60\) exceed 1,000,000"):
        SynthesisConfig(iterations=1_000_000)
    with pytest.raises(ValueError, match="300000160 iterations over all scales"):
        SynthesisConfig(iterations=300_000_000)


def test_unknown_layer_is_named_at_construction():
    with pytest.raises(ValueError, match=r"^unknown layer 'conv9_9' in layers=conv1_1,conv9_9; use VGG names"):
        SynthesisConfig(layers=("conv1_1", "conv9_9"), layer_weights=(1, 1))


# Messages: every field through bad values, from the command line's text and from Python.

BAD = ["", ",", "a,b", "-1", "1e400", "nan", "1,,2", " "]
# (field, text) that are valid settings, not mistakes: an empty schedule is one scale and an empty blend none,
# and any text but an empty one is a folder name (an unusable folder is the runner's to refuse, when it creates
# it), as any text is a palette's path for colors (the empty one: none).
VALID = ({("coarse_iterations", ""), ("coarse_iterations", " "), ("blend", ""), ("blend", " "), ("region", ""),
          ("region", " ")}
         | {("output_dir", t) for t in BAD if t.strip()} | {("colors", t) for t in BAD} | {(name, t) for t in BAD for name in ("guide", "source_guide", "fill", "mask",
                                                                                    "content")})


def construct(name, value):
    cls, field = FIELDS[name]
    kwargs = {name: value}
    if name == "layers" and not isinstance(value, str):  # the CLI's --layers alone: every layer weighs 1
        kwargs["layer_weights"] = (1.0,) * len(value)
    return cls(**kwargs)


def example_of(message):
    """The first valid value a message offers: after 'like', 'one of' or 'e.g.'."""
    found = re.search(r"(?:like|one of|e\.g\.) (\S+)", message)
    assert found, f"no example in: {message}"
    token = found.group(1).rstrip(",;)")
    name, _, text = token.rpartition("=")
    return name, text


def check_message(name, message):
    assert "\n" not in message and "; " in message, message
    assert name in message, f"{name!r} not named in: {message}"
    example_name, text = example_of(message)
    example_name = example_name.lstrip("-") or name
    cls, field = FIELDS[example_name]
    construct(example_name, config_lib.parse_value(field, text))  # the example is a valid value


@pytest.mark.parametrize("name", sorted(FIELDS))
@pytest.mark.parametrize("text", BAD)
def test_every_message_names_the_field_and_a_valid_example(name, text):
    cls, field = FIELDS[name]
    for source, value_of in [("flag", lambda: config_lib.parse_value(field, text)), ("python", lambda: text)]:
        try:
            construct(name, value_of())
        except ValueError as e:
            assert (name, text) not in VALID, (source, str(e))
            check_message(name, str(e))
        else:
            valid_from_python = field.type is str and not field.metadata["choices"]
            assert (name, text) in VALID or (source == "python" and valid_from_python), (source, name, text)


def test_empty_schedule_says_what_follows():
    """`--coarse_iterations=,` ended "like " with nothing after; now the example, and how to get one scale."""
    with pytest.raises(ValueError) as e:
        config_lib.parse_value(FIELDS["coarse_iterations"][1], ",")
    assert str(e.value) == ("--coarse_iterations=, has an empty item; give comma-separated whole numbers like 100,60 "
                            "(or empty for one scale)")


def test_per_layer_is_said_only_of_per_layer_fields():
    for name in ("coarse_iterations", "size", "loss"):
        with pytest.raises(ValueError) as e:
            construct(name, config_lib.parse_value(FIELDS[name][1], "a,b"))
        assert "per layer" not in str(e.value), str(e.value)
    for text in ("a,b", "1,1"):
        with pytest.raises(ValueError, match="per layer"):
            construct("layer_weights", config_lib.parse_value(FIELDS["layer_weights"][1], text))


def test_public_functions_have_docstrings():
    public = [getattr(config_lib, n) for n in dir(config_lib) if not n.startswith("_")]
    functions = [f for f in public if callable(f) and getattr(f, "__module__", None) == config_lib.__name__]
    methods = [m for m in vars(SynthesisConfig).values() if callable(m) and not m.__name__.startswith("_")]
    properties = [p.fget for p in vars(SynthesisConfig).values() if isinstance(p, property)]
    for f in functions + methods + properties:
        assert f.__doc__ and f.__doc__.strip(), f.__name__
