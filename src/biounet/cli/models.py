"""``biounet models``: the built-in models (``--model NAME`` runs one, ``--init-from NAME`` fine-tunes it)."""

from __future__ import annotations

import argparse

COMMANDS = ("models",)


def add_arguments(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "models",
        help="list the built-in models",
        description="List the models shipped with biounet: use one with `predict --model NAME` or "
        "`evaluate --model NAME`, fine-tune it with `train --init-from NAME`.",
    )


def run(args: argparse.Namespace) -> int:
    from biounet.model.pretrained import builtin_models

    for name, meta in builtin_models().items():
        scores = meta.get("recipe_scores", {})
        mean = scores.get("five_fold_mean", {})
        print(f"{name}  ({meta.get('bytes', 0) / 2**20:.2f} MiB, {meta['config'].get('base_width')}-wide U-Net)")
        print(f"  {meta['description']}")
        print(f"  suits: {meta['suits']}")
        if mean:
            print(
                f"  recipe, 5 folds (challenge definition): v_rand {mean['v_rand']:.4f}, v_info {mean['v_info']:.4f}, "
                f"dice_coeff {mean['dice_coeff']:.4f}"
            )
        print(f"  trained: {meta['training_command']}")
        print(f"  terms: {meta['data_terms']}")
    return 0
