"""The bench probes: counted FLOPs against hand-counted and published figures."""


def test_flop_count_matches_the_paper_network():
    """The counter sees the whole network: 572x572 at width 64 costs about 301 GFLOP forward and
    902 GFLOP forward+backward (the figures the speed issue derives by hand)."""
    from biounet.bench.probes import probe_flops

    r = probe_flops(
        {
            "base_width": 64,
            "depth": 4,
            "tile_size": 572,
            "batch_size": 16,
            "precision": "auto",
            "device": "cpu",
            "slice_tile": 700,
        }
    )
    assert abs(r["gflop_infer_tile"] - 301) < 3 and abs(r["gflop_train_tile"] - 902) < 9
    assert r["gflop_infer_slice_tile"] > r["gflop_infer_tile"] * (700 / 572) ** 2 * 0.9


def test_flop_count_is_exact_on_a_hand_counted_network():
    """Depth 1, width 2, valid padding: every convolution counted by hand (2 FLOP per multiply-add,
    biases not counted). Forward+backward = 3x forward less the first convolution's input gradient
    (the image needs none)."""
    from biounet.bench.probes import probe_flops

    def forward(t, w=2):
        p = (t - 4) // 2  # after the first double conv and the 2x2 pool
        u = 2 * (p - 4)  # after the bottom double conv and the 2x2 up-convolution
        macs = (
            (t - 2) ** 2 * 1 * w * 9
            + (t - 4) ** 2 * w * w * 9  # inc: 1->w, w->w
            + (p - 2) ** 2 * w * 2 * w * 9
            + (p - 4) ** 2 * 2 * w * 2 * w * 9  # down: w->2w, 2w->2w
            + (p - 4) ** 2 * 2 * w * w * 4  # 2x2 transposed conv 2w->w, counted on its input
            + (u - 2) ** 2 * 2 * w * w * 9
            + (u - 4) ** 2 * w * w * 9  # up: (w+w)->w, w->w
            + (u - 4) ** 2 * w * 2
        )  # 1x1 head w->2
        return 2 * macs, 2 * (t - 2) ** 2 * 1 * w * 9

    r = probe_flops(
        {
            "base_width": 2,
            "depth": 1,
            "tile_size": 20,
            "batch_size": 1,
            "precision": "fp32",
            "device": "cpu",
            "slice_tile": 28,
        }
    )
    fwd, first = forward(20)
    assert fwd == 47376 and first == 11664  # the hand count itself, pinned
    assert round(r["gflop_infer_tile"] * 1e9) == fwd
    assert round(r["gflop_train_tile"] * 1e9) == 3 * fwd - first
    assert round(r["gflop_infer_slice_tile"] * 1e9) == forward(28)[0]
