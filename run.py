"""Synthesise textures like a source photo (Gatys et al. 2015): `python run.py --flagfile=texture.cfg`.

The same as the `texsynth` command that `pip install .` puts on the PATH; everything is in
texsynth_jax/cli.py. Flags: python run.py --helpshort.
"""

from texsynth_jax.cli import run

if __name__ == "__main__":
    run()
