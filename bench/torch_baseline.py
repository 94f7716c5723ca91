"""A small PyTorch baseline of the same algorithm, for bench/ only (texsynth_jax never imports torch).

Same network and loss as texsynth_jax: the VGG convs of the converted weights file (as torch
tensors), ReLU after every conv, 2x2 average pooling, features up to the deepest wanted layer,
Gram = F^T F / M (M = H*W), loss sum_l w_l * sum((G_l - A_l)^2) / (4 N_l^2). NCHW, batch of
images; the loss of a batch is the sum of the per-image losses, so the gradient of each image is
its own. With a content photo (set_content), the content loss of Gatys et al. (2016) as texsynth_jax
weighs it (texsynth_jax/content.py): weight * unit * mean((F - P)^2) / mean(P^2), unit the texture
loss of a flat grey image.
"""

import numpy as np
import torch
import torch.nn.functional as F

from texsynth_jax import vgg


class TorchGatys:
    """Loss and gradient w.r.t. a batch of images, in PyTorch.

    Args:
      params, spec: from `texsynth_jax.load_weights` (HWIO numpy kernels).
      layers, layer_weights: as in `SynthesisConfig`.
      precision: "fp32", or "bf16" (torch.autocast: bf16 convs, float32 Gram and loss).
      channels_last: run the convs on channels-last (NHWC) tensors, oneDNN's and cuDNN's preferred layout.
      device: "cpu" or "cuda" (cuDNN, with PyTorch's defaults: TF32 convolutions, float32 matrix products).
      content_layer: the layer of a content loss (set_content), or None for textures alone.
    """

    def __init__(self, params, spec, layers, layer_weights, precision="fp32", channels_last=False, device="cpu",
                 content_layer=None):
        self.spec = spec
        self.layers = tuple(layers)
        self.weights = dict(zip(layers, layer_weights))
        self.content_layer, self.content = content_layer, None
        self.path = vgg.needed_layers(spec.arch, (*layers, *([content_layer] if content_layer else [])))
        self.precision, self.device = precision, torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.kernels = {}
        for name in self.path:
            if name.startswith("conv"):
                k = torch.from_numpy(np.ascontiguousarray(
                    np.transpose(np.asarray(params[name]["kernel"], np.float32), (3, 2, 0, 1))))
                b = torch.from_numpy(np.asarray(params[name]["bias"], np.float32).copy())
                self.kernels[name] = (k.contiguous(memory_format=self.memory_format).to(self.device), b.to(self.device))
        order = [2, 1, 0] if spec.channel_order == "BGR" else [0, 1, 2]
        self.order = torch.tensor(order, device=self.device)
        self.mean = torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.targets = None

    def features(self, images):
        """images: float32 [B, 3, H, W] RGB in [0, 1] -> {layer: [B, C, H_l, W_l]}."""
        x = (images[:, self.order] * self.spec.scale - self.mean) / self.std
        x = x.contiguous(memory_format=self.memory_format)
        out = {}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            for name in self.path:
                if name.startswith("conv"):
                    k, b = self.kernels[name]
                    x = F.relu(F.conv2d(x, k, b, padding=1))
                else:
                    x = F.avg_pool2d(x, 2)
                if name in self.layers or name == self.content_layer:
                    out[name] = x
        return out

    @staticmethod
    def gram(f):
        b, c, h, w = f.shape
        flat = f.float().reshape(b, c, h * w)
        return torch.bmm(flat, flat.transpose(1, 2)) / (h * w)

    def set_targets(self, source):
        """source: float32 [3, H, W] RGB in [0, 1]; stores its Grams [C, C] per layer."""
        with torch.no_grad():
            feats = self.features(source[None].to(self.device))
        self.targets = {name: self.gram(feats[name])[0] for name in self.layers}

    def set_content(self, content, weight):
        """content: float32 [3, H, W] RGB in [0, 1] at the output's size; stores its features at content_layer and
        the weight of the mean square error to them (set_targets first: the unit is a grey image's texture loss)."""
        with torch.no_grad():
            p = self.features(content[None].to(self.device))[self.content_layer].float()
            unit = self.texture_loss(self.features(torch.full_like(content[None], 0.5).to(self.device)))
        self.content = (p, weight * unit / p.square().mean())

    def texture_loss(self, feats):
        """Sum over the batch of the per-image texture losses of features {layer: [B, C, H, W]}."""
        total = 0.0
        for name in self.layers:
            g = self.gram(feats[name])
            n = g.shape[-1]
            total = total + self.weights[name] * ((g - self.targets[name]) ** 2).sum() / (4.0 * n * n)
        return total

    def content_error(self, feats):
        """Per image [B]: mean((F - P)^2) / mean(P^2) at the content layer (the content loss at weight 1 over unit)."""
        p, _ = self.content
        f = feats[self.content_layer].float()
        return (f - p).square().flatten(1).mean(1) / p.square().mean()

    def loss(self, images):
        """Sum over the batch of the per-image losses, texture and content (float32 scalar)."""
        feats = self.features(images)
        total = self.texture_loss(feats)
        if self.content is not None:
            p, weight = self.content
            total = total + weight * (feats[self.content_layer].float() - p).square().flatten(1).mean(1).sum()
        return total

    def loss_and_grad(self, images):
        """images: float32 [B, 3, H, W]. Returns (loss float, grad [B, 3, H, W])."""
        x = images.detach().to(self.device).requires_grad_(True)
        loss = self.loss(x)
        loss.backward()
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # so that a timer around this call times the work
        return loss.detach(), x.grad
