"""The options of ``biounet train``: every field of the one configuration, with its default, its help
text (the command line's, see ``cli/options.py``) and its group. :class:`biounet.core.config.TrainConfig`
adds the checks, the YAML text and the schema versions; import it from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _opt(default: Any, help: str, choices: tuple | None = None, group: str = "run") -> Any:
    return field(default=default, metadata={"help": help, "choices": choices, "group": group})


@dataclass
class TrainFields:
    """Every option of ``biounet train``; the names are the YAML keys, flags use dashes."""

    # data
    data: str | None = _opt(
        None,
        "ISBI 2012 folder (train-volume.tif, train-labels.tif), a folder with images/ and masks/ of equal names, "
        "or an image volume (PATH.zarr, PATH.h5:/DATASET, PATH.tif) with --masks",
        group="data",
    )
    masks: str | None = _opt(
        None, "the label volume of an image volume in --data, the same (z, y, x) shape; read lazily", group="data"
    )
    fold: str = _opt(
        "1",
        "cross-validation fold to hold out, 0..folds-1 (the reference's "
        "cross_valid_ind), or 'all' to train on every image",
        group="data",
    )
    folds: int = _opt(5, "number of cross-validation folds", group="data")
    ignore_value: int | None = _opt(
        None, "mask value whose pixels are left out of the loss (sparse annotations); none by default", group="data"
    )
    painted: bool = _opt(
        False,
        "masks are painted annotations, as napari's Labels layer and ilastik hold them: 0 unlabelled (left out "
        "of the loss and the scores), 1..K the classes 0..K-1 (two classes: 1 membrane, 2 cell); not with "
        "--ignore-value or --mask-threshold",
        group="data",
    )
    mask_threshold: float | None = _opt(
        None,
        "binarize two-class masks whose edges were anti-aliased (resized or "
        "painted): mask values above this are cell (255), the rest membrane "
        "(0), e.g. 127; none by default (masks must be exactly 0/255 or 0/1)",
        group="data",
    )
    # model
    base_width: int = _opt(64, "channels of the first level; doubles at every level down", group="model")
    depth: int = _opt(4, "number of 2x2 max-pool steps down (the paper: 4)", group="model")
    padding: str = _opt(
        "valid",
        "'valid': unpadded convolutions as in the paper (572 in, 388 out); 'same': output as large as the input",
        ("valid", "same"),
        group="model",
    )
    batch_norm: bool = _opt(False, "batch normalisation after every convolution", group="model")
    in_channels: int = _opt(1, "image channels (1 grey, 3 RGB)", group="model")
    classes: int = _opt(
        2, "number of classes; 2 reads 0/255 (or 0/1) masks, more read integer class maps", group="model"
    )
    context: int = _opt(
        0,
        "sections on each side of a slice that the network sees beside it (2.5D): 1 gives the sections "
        "z-1, z, z+1 as input channels, mirrored at the stack's ends; needs a stack (the ISBI TIFFs, an image "
        "volume); 0: 2D",
        group="model",
    )
    # sampling and augmentation
    tile_size: int = _opt(
        572,
        "input tile side in pixels (valid padding: see biounet.model.geometry."
        "valid_input_size); tiles are cut from full-resolution images with "
        "mirrored borders",
        group="augmentation",
    )
    flip: bool = _opt(True, "random horizontal and vertical flips", group="augmentation")
    rotate90: bool = _opt(True, "random rotations by multiples of 90 degrees", group="augmentation")
    elastic: bool = _opt(
        True,
        "the paper's elastic deformation (random displacements on a coarse grid, smoothly interpolated)",
        group="augmentation",
    )
    elastic_sigma: float = _opt(10.0, "standard deviation of the grid displacements in pixels", group="augmentation")
    elastic_grid: int = _opt(3, "points per side of the coarse displacement grid", group="augmentation")
    brightness: float = _opt(
        0.1, "largest brightness shift, in units of the [-1, 1] image range (0 switches it off)", group="augmentation"
    )
    contrast: float = _opt(0.1, "largest relative contrast change (0 switches it off)", group="augmentation")
    # loss
    border_weight: float = _opt(
        0.0, "w0 of the paper's border weight map (the paper: 10; 0 switches it off)", group="loss"
    )
    border_sigma: float = _opt(5.0, "sigma of the border weight map in pixels", group="loss")
    class_balance: bool = _opt(False, "weight pixels by inverse class frequency", group="loss")
    dice_loss_weight: float = _opt(
        0.0,
        "add this weight times (1 - soft dice) per image, the reference's "
        "dice_coeff, to the cross-entropy (0: cross-entropy only, as the reference)",
        group="loss",
    )
    # affinities (docs/training.md, "Affinities")
    affinities: str = _opt(
        "none",
        "also predict affinities (whether a pixel and pixel + offset lie in the same cell) for this offset "
        "set, after the class channels: mws12 (the mutex watershed's 12 in-plane offsets); none: classes only",
        ("none", "mws12"),  # the names of biounet.data.affinities.OFFSET_SETS (a test keeps them equal)
        group="affinities",
    )
    membrane_mode: str = _opt(
        "grow",
        "the membrane in the affinity targets: grow (each membrane pixel joins its nearest cell) or keep "
        "(the membrane is one object of its own)",
        ("grow", "keep"),
        group="affinities",
    )
    affinity_loss: str = _opt(
        "dice",
        "loss of the affinity channels: dice (soft dice per tile and channel) or dice+bce (plus the binary "
        "cross-entropy of every valid edge)",
        ("dice", "dice+bce"),
        group="affinities",
    )
    affinity_weight: float = _opt(1.0, "weight of the affinity loss, added to the class loss", group="affinities")
    # optimisation
    steps: int = _opt(600, "optimizer steps to train", group="optimisation")
    batch_size: int = _opt(16, "global batch: tiles per optimizer step", group="optimisation")
    micro_batch_size: int = _opt(
        0,
        "tiles per forward/backward pass (gradient accumulation); 0 chooses the largest that fits the available memory",
        group="optimisation",
    )
    memory_gib: float = _opt(
        0.0,
        "memory the automatic micro-batch may plan for, in GiB (0: half the free "
        "memory, and on the CPU at most 1 GiB of activations, beyond which larger "
        "micro-batches are no faster)",
        group="optimisation",
    )
    lr: float = _opt(1e-4, "Adam learning rate", group="optimisation")
    weight_decay: float = _opt(5e-4, "Adam weight decay (L2, as the reference)", group="optimisation")
    lr_schedule: str = _opt(
        "constant",
        "learning rate over the run: constant (the reference), cosine "
        "(decays to 0 at --steps) or poly (linear decay to 0)",
        ("constant", "cosine", "poly"),
        group="optimisation",
    )
    warmup_steps: int = _opt(0, "steps of linear learning-rate warm-up from 0 to --lr", group="optimisation")
    precision: str = _opt(
        "auto",
        "autocast precision; auto: bf16 on CPUs with AMX or AVX512-BF16, "
        "bf16 (or fp16 with a gradient scaler) on CUDA, else fp32",
        ("auto", "bf16", "fp16", "fp32"),
        group="optimisation",
    )
    device: str = _opt("auto", "cpu, cuda or cuda:N; auto picks CUDA when present", group="optimisation")
    threads: int = _opt(0, "CPU threads for PyTorch (0: PyTorch's default, one per core)", group="optimisation")
    compile: bool | None = _opt(
        None,
        "compile the training step's network with torch.compile (TorchInductor: "
        "Triton on CUDA, a C++ compiler on the CPU); the first step spends a minute or "
        "more compiling. Unset: on for CUDA, off on the CPU",
        group="optimisation",
    )
    workers: int = _opt(0, "DataLoader worker processes preparing tiles (0: in the main process)", group="optimisation")
    seed: int = _opt(0, "seed of the weights and of every sample's randomness", group="optimisation")
    dist_timeout: float = _opt(
        600.0,
        "under torchrun: seconds a collective waits for the other processes "
        "before the job fails (a dead or stuck rank)",
        group="optimisation",
    )
    # run folder and checkpoints
    out: str | None = _opt(None, "run folder; none given: runs/<name>")
    name: str | None = _opt(
        None, "run name, the folder's name under runs/ when --out is not given; none given: the date and time"
    )
    log_every: int = _opt(10, "log a line every N steps")
    checkpoint_every: int = _opt(100, "save a checkpoint every N steps (and always at the end)")
    keep_checkpoints: int = _opt(10, "rotated weight checkpoints to keep (last.pt is always kept)")
    validation: bool = _opt(
        True,
        "segment and score the held-out fold at full resolution at the end of "
        "training (and every --val-every steps); the best dice_coeff is kept as best.pt",
    )
    val_every: int = _opt(0, "validate every N steps as well (0: only at the end)")
    val_tta: bool = _opt(
        False,
        "validate with test-time augmentation: average the 8 flips/rotations (8x the "
        "validation compute), as `biounet evaluate --tta`",
    )
    progress: str = _opt("auto", "progress bar: auto (on a terminal), on, off", ("auto", "on", "off"))
    resume: str | None = _opt(None, "continue a run: its folder or a last.pt checkpoint")
    init_from: str | None = _opt(
        None,
        "start from trained weights (fine-tuning): a checkpoint, a run folder (its best.pt, else last.pt) or a "
        "built-in model's name, taking their network (width, depth, padding, batch norm, "
        "channels, context, classes, tile size, affinities) where none is set; the output layer is skipped "
        "when its channels differ (--classes, --affinities)",
    )
