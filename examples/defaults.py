"""Each model's default training settings for ``reinmax-compare`` (an option overrides them), in
one place: the models' ``configure`` reads them and ``--help`` lists them. No framework imports,
so that ``--help`` is quick.
"""

from __future__ import annotations

from reinmax_examples.methods import LOCAL_LR_MULTIPLIER

__all__ = ["DEFAULTS", "VAE_PAPER_SETTINGS", "defaults_help"]

_ADAM = (
    f"Adam with gradients clipped at norm 10, per-datum guide logits at {LOCAL_LR_MULTIPLIER:g}x "
    "the learning rate"
)
DEFAULTS = {
    "gmm": {"steps": 1000, "lr": 0.05, "temperature": 1.0, "optimiser": _ADAM},
    "lda": {"steps": 400, "lr": 0.05, "temperature": 1.0, "optimiser": _ADAM},
    "vae": {"steps": 2000, "latent": "8x4", "optimiser": "the paper's, per --latent"},
    "fhmm": {"steps": 500, "lr": 0.05, "temperature": 1.0, "optimiser": _ADAM},
    "sbn": {"steps": 2000, "lr": 1e-3, "temperature": 1.0, "optimiser": "Adam"},
    "regimes": {"steps": 300, "lr": 0.05, "temperature": 1.0, "optimiser": _ADAM},
}
# categories x latents: (optimiser, learning rate, ReinMax temperature), from the paper
VAE_PAPER_SETTINGS = {
    "8x4": ("adam", 5e-4, 1.3),
    "4x24": ("radam", 5e-4, 1.5),
    "8x16": ("radam", 7e-4, 1.5),
    "16x12": ("radam", 7e-4, 1.5),
    "64x8": ("radam", 5e-4, 1.5),
    "10x30": ("radam", 5e-4, 1.3),
}


def defaults_help() -> str:
    """The defaults as ``--help`` shows them."""
    lines = ["defaults per model (each option overrides its default):"]
    for model, settings in DEFAULTS.items():
        if model == "vae":
            lines.append(
                f"  vae: --steps {settings['steps']}, --latent {settings['latent']}; the paper's "
                "optimiser, learning rate and temperature per --latent:"
            )
            lines += [
                f"       {latent}: {optimiser}, lr {lr:g}, temperature {temperature:g}"
                for latent, (optimiser, lr, temperature) in VAE_PAPER_SETTINGS.items()
            ]
            continue
        lines.append(
            f"  {model}: --steps {settings['steps']}, --lr {settings['lr']:g}, --temperature "
            f"{settings['temperature']:g}; {settings['optimiser']}"
        )
    return "\n".join(lines)
