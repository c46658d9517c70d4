"""Sampling: exact distributions, range (shard) consistency, thread independence.

Statistical checks use fixed keys, so each is deterministic; they fail only if a
sampler's distribution is wrong. Sample sizes and thresholds are justified where
they are used.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from hydra_init import sampling as S
from hydra_init.sampling.generators import generator
from hydra_init.sampling.truncnormal import trunc_plan

INF = math.inf

# Kolmogorov-Smirnov: we reject at p < 1e-4. With n = 200k samples, that catches any
# CDF error above ~2.1/sqrt(n) = 0.0047 (the KS critical value at that level).
N_LARGE = 200_000
P_MIN = 1e-4


def _large(draw: S.Draw, n: int = N_LARGE, dtype=torch.float32, name: str = "w") -> np.ndarray:
    """A tile-path draw (n > SMALL elements)."""
    assert n > S.SMALL
    out = torch.empty(n, dtype=dtype)
    S.fill_(out, draw, S.derive_key(11, name, out.shape))
    return out.double().numpy()


def _small(draw: S.Draw, n: int = N_LARGE, size: int = 1000) -> np.ndarray:
    """Counter-based draws: many small tensors (different keys) pooled together."""
    assert size <= S.SMALL
    outs = [torch.empty(size) for _ in range(n // size)]
    jobs = [S.Job(o, draw, S.derive_key(5, f"p{i}", o.shape), o.shape) for i, o in enumerate(outs)]
    S.run_parallel(S.job_tasks(jobs))
    return torch.cat(outs).double().numpy()


# (mean, std, a, b, method the planner must pick): ±2 std as in ViT, one-sided, narrow,
# far-tail and asymmetric intervals, so every sampling method is exercised.
TRUNC_CASES = [
    (0.0, 0.02, -0.04, 0.04, "normal"),  # ViT / timm: ±2 std
    (0.0, 1.0, -INF, INF, "normal"),  # no truncation at all
    (1.0, 2.0, 1.0, INF, "normal"),  # one-sided at the mean: folded normal, nothing rejected
    (0.0, 1.0, 0.1, 3.0, "normal"),  # one side of the mean: folded normal with rejections
    (0.0, 1.0, 0.5, 1.0, "icdf"),  # asymmetric, one side of the mean
    (0.0, 1.0, -0.1, 0.1, "icdf"),  # narrow around the mean
    (0.0, 1.0, 3.0, 5.0, "icdf"),  # tail, both bounds finite
    (0.0, 1.0, -INF, -1.5, "icdf"),  # one-sided left tail (mirrored), with the far-tail fallback
    (0.0, 1.0, 8.0, INF, "exp"),  # far tail
    (0.0, 1.0, -9.0, -8.5, "exp"),  # narrow far tail on the left
    (0.0, 0.02, -2.0, 2.0, "normal"),  # mmengine's absolute default: truncates nothing
]


@pytest.mark.parametrize(("mean", "std", "a", "b", "method"), TRUNC_CASES)
def test_trunc_normal_matches_scipy_truncnorm(mean, std, a, b, method):
    alpha, beta = (a - mean) / std, (b - mean) / std
    assert trunc_plan(alpha, beta).method == method  # the case exercises what it claims
    draw = S.TruncNormalDraw(mean, std, a, b)
    reference = stats.truncnorm(alpha, beta, loc=mean, scale=std)
    for values in (_large(draw), _small(draw, n=50_000)):
        assert values.min() >= a and values.max() <= b
        result = stats.kstest(values, reference.cdf)
        assert result.pvalue > P_MIN, result


@pytest.mark.parametrize(("a", "b"), [(-2.0, 2.0), (3.0, 5.0), (8.0, INF)])
def test_trunc_normal_tails_chi_square(a, b):
    """KS is weakest in the tails; a chi-square over 20 equiprobable bins is not.

    Bins hold 10k expected samples each; we reject at p < 1e-4 (chi-square, 19 dof).
    """
    reference = stats.truncnorm(a, b)
    values = _large(S.TruncNormalDraw(0.0, 1.0, a, b), dtype=torch.float64)
    edges = reference.ppf(np.linspace(0, 1, 21))
    counts, _ = np.histogram(values, bins=edges)
    assert stats.chisquare(counts).pvalue > P_MIN


def test_trunc_normal_matches_torch_trunc_normal():
    """Two-sample KS against torch.nn.init.trunc_normal_ itself (n = 200k each, p < 1e-4)."""
    torch.manual_seed(0)
    ours = _large(S.TruncNormalDraw(0.0, 0.02, -0.04, 0.04))
    theirs = torch.nn.init.trunc_normal_(torch.empty(N_LARGE), 0.0, 0.02, -0.04, 0.04).double().numpy()
    assert stats.ks_2samp(ours, theirs).pvalue > P_MIN


@pytest.mark.parametrize(
    ("draw", "reference"),
    [
        (S.NormalDraw(0.5, 2.0), stats.norm(0.5, 2.0)),
        (S.UniformDraw(-0.3, 0.7), stats.uniform(-0.3, 1.0)),
    ],
)
def test_normal_and_uniform_match_scipy(draw, reference):
    for values in (_large(draw), _small(draw)):
        assert stats.kstest(values, reference.cdf).pvalue > P_MIN


def test_counter_based_normals_are_uncorrelated():
    """Lag-1 and cross-key correlations of 200k normals: |r| < 5/sqrt(n) = 0.011 (a 5-sigma band)."""
    values = _small(S.NormalDraw(0.0, 1.0))
    bound = 5 / math.sqrt(len(values))
    assert abs(np.corrcoef(values[:-1], values[1:])[0, 1]) < bound
    half = len(values) // 2
    assert abs(np.corrcoef(values[:half], values[half:])[0, 1]) < bound


ADDRESSABLE_DRAWS = [
    S.NormalDraw(0.0, 1.0), S.UniformDraw(-1.0, 1.0), S.TruncNormalDraw(0.0, 1.0, -2.0, 2.0),
    S.TruncNormalDraw(0.0, 1.0, 0.5, INF), S.TruncNormalDraw(0.0, 1.0, 7.0, INF), S.FillDraw(3.5)]


@pytest.mark.parametrize("numel", [1, 7, S.SMALL, S.SMALL + 1, 3 * S.TILE + 123])
@pytest.mark.parametrize("draw", ADDRESSABLE_DRAWS, ids=repr)
def test_any_range_of_a_vector_matches_the_full_draw(numel, draw):
    """A range [start, stop) of a 1-D tensor drawn alone equals the same slice of the full draw."""
    key = S.derive_key(3, "x", (numel,))
    full = torch.empty(numel)
    S.fill_region_(full, draw, key, full.shape)
    rng = np.random.default_rng(numel)
    cuts = {0, numel, numel // 2, max(0, numel - 1)} | set(rng.integers(0, numel + 1, 6).tolist())
    if numel > S.TILE:
        cuts |= {S.TILE - 1, S.TILE, S.TILE + 1, 2 * S.TILE + 17}
    cuts = sorted(cuts)
    for start, stop in itertools.pairwise(cuts):
        part = torch.empty(stop - start)
        S.fill_region_(part, draw, key, full.shape, S.Region(start, 0, stop - start, 1))
        assert torch.equal(part, full[start:stop]), (start, stop)


# 2-D grids: tiles of whole rows, of TILE_WIDTH columns, short tiles with wide rows, N-D weights
GRID_SHAPES = [(60, 50), (768, 768), (300, 1000), (5, 70_000), (64, 3, 3, 50), (1, 197, 768)]


@pytest.mark.parametrize("shape", GRID_SHAPES, ids=str)
@pytest.mark.parametrize("draw", ADDRESSABLE_DRAWS, ids=repr)
def test_any_rectangle_matches_the_full_draw(shape, draw):
    """With block tiles, row blocks, column blocks and both (the shards of FSDP, tensor parallel
    and 2-D meshes) drawn alone equal the same block of the full draw, bit for bit, at tile
    edges and between."""
    key = S.derive_key(3, "w", shape)
    full = torch.empty(shape)
    S.fill_region_(full, draw, key, full.shape, blocks=True)
    grid = S.tile_grid(shape, torch.device("cpu"), blocks=True)
    view = full.view(grid.rows, grid.cols)
    rng = np.random.default_rng(len(shape))

    def cuts(size: int, tile: int) -> list[int]:
        edges = {0, size, size // 2, tile - 1, tile, tile + 1} | set(rng.integers(0, size + 1, 3).tolist())
        return sorted(c for c in edges if 0 <= c <= size)

    for top, bottom in itertools.pairwise(cuts(grid.rows, grid.tile_rows)):
        for left, right in itertools.pairwise(cuts(grid.cols, grid.tile_cols)):
            part = torch.empty(bottom - top, right - left)
            S.fill_region_(part, draw, key, full.shape, S.Region(top, left, bottom - top, right - left),
                           blocks=True)
            assert torch.equal(part, view[top:bottom, left:right]), (top, bottom, left, right)


def test_tile_grid_puts_whole_tiles_in_aligned_shards():
    """Block tiles are TILE_WIDTH columns wide (or whole rows) and hold at most TILE values;
    flat tiles are the flattened tensor's runs of TILE (the value format before blocks)."""
    cpu = torch.device("cpu")
    for shape in [*GRID_SHAPES, (4096, 11008), (50257, 768), (100_000,), (40_000, 3)]:
        grid = S.tile_grid(shape, cpu, blocks=True)
        assert grid.rows * grid.cols == math.prod(shape)
        assert grid.tile_rows * grid.tile_cols <= S.TILE
        assert grid.tile_cols == grid.cols or grid.tile_cols % S.TILE_WIDTH == 0
        assert S.tile_grid(shape, cpu) == (math.prod(shape), 1, S.TILE, 1)
    assert S.tile_grid((2048, 2048), cpu, blocks=True)[2:] == (512, 256)  # 4-way column shards: 2 tiles wide
    cuda = torch.device("cuda")
    assert S.tile_grid((2048, 2048), cuda) == (2048 * 2048, 1, S.TILE_ACCELERATOR, 1)
    assert S.tile_grid((4096, 4096), cuda, blocks=True) == (4096, 4096, 4096, 256)


def test_values_do_not_depend_on_the_thread_count():
    draws = [S.NormalDraw(0.0, 1.0), S.TruncNormalDraw(0.0, 1.0, -2.0, 2.0), S.UniformDraw(0.0, 1.0)]
    sizes = [5, 3000, 5 * S.TILE + 1]
    threads = torch.get_num_threads()
    results = []
    try:
        for n_threads in (1, 2, 3):
            torch.set_num_threads(n_threads)
            outs = [torch.empty(n) for d in draws for n in sizes]
            jobs = [S.Job(o, d, S.derive_key(1, f"{i}", o.shape), o.shape)
                    for i, (o, d) in enumerate(zip(outs, [d for d in draws for _ in sizes], strict=True))]
            S.run_parallel(S.job_tasks(jobs))
            results.append(outs)
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(x, y) for x, y in zip(results[0], other, strict=True))


def test_tile_generators_use_all_64_seed_bits():
    """torch's CPU manual_seed keeps 32 bits; tile streams must differ in the high bits too."""
    assert S.FULL_STATE_SEEDING
    seed = S.tile_seed(123, 0)
    a = torch.empty(64).normal_(generator=generator(torch.device("cpu"), seed))
    b = torch.empty(64).normal_(generator=generator(torch.device("cpu"), seed ^ (1 << 40)))
    assert not torch.equal(a, b)
    torch_gen = torch.Generator()
    c = torch.empty(64).normal_(generator=torch_gen.manual_seed(seed & 0xFFFFFFFF))
    d = torch.empty(64).normal_(generator=torch_gen.manual_seed((seed & 0xFFFFFFFF) | (1 << 40)))
    assert torch.equal(c, d)  # the torch behaviour this works around


def test_tiles_of_one_tensor_are_different_streams():
    values = _large(S.NormalDraw(0.0, 1.0), n=4 * S.TILE)
    tiles = values.reshape(4, S.TILE)
    assert np.abs(np.corrcoef(tiles)[np.triu_indices(4, 1)]).max() < 5 / math.sqrt(S.TILE)


def test_reduced_precision_is_the_float32_draw_rounded():
    key = S.derive_key(0, "w", (S.TILE * 2,))
    full = torch.empty(S.TILE * 2)
    S.fill_(full, S.TruncNormalDraw(0.0, 1.0, -2.0, 2.0), key)
    for dtype in (torch.bfloat16, torch.float16):
        low = torch.empty(S.TILE * 2, dtype=dtype)
        S.fill_(low, S.TruncNormalDraw(0.0, 1.0, -2.0, 2.0), key)
        assert torch.equal(low, full.to(dtype))


def test_float64_tensors_draw_in_float64():
    values = _large(S.NormalDraw(0.0, 1.0), dtype=torch.float64)
    assert len(np.unique(values.astype(np.float32))) < len(np.unique(values))  # more than float32 bits


def test_noise_is_shared_across_scales():
    """The key ignores the rule's arguments: std 0.04 is exactly twice std 0.02."""
    key = S.derive_key(0, "w", (S.TILE + 5,))
    a, b = torch.empty(S.TILE + 5), torch.empty(S.TILE + 5)
    S.fill_(a, S.NormalDraw(0.0, 0.02), key)
    S.fill_(b, S.NormalDraw(0.0, 0.04), key)
    assert torch.equal(2 * a, b)


@pytest.mark.parametrize("shape", [(8, 8), (4, 12), (12, 4), (6, 2, 3, 3)])
def test_orthogonal_is_orthogonal_and_deterministic(shape):
    key = S.derive_key(0, "w", shape)
    q = S.materialize(S.OrthogonalDraw(2.0), torch.Size(shape), key, torch.float32, torch.device("cpu"))
    again = S.materialize(S.OrthogonalDraw(2.0), torch.Size(shape), key, torch.float32, torch.device("cpu"))
    assert torch.equal(q, again)
    flat = q.reshape(shape[0], -1).double()
    small = min(flat.shape)
    gram = flat @ flat.T if flat.shape[0] == small else flat.T @ flat
    assert torch.allclose(gram, 4.0 * torch.eye(small, dtype=torch.float64), atol=1e-5)


def test_a_failing_task_raises_in_the_caller():
    def boom() -> None:
        raise RuntimeError("task failed")

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="task failed"):
            S.run_parallel([lambda: None, boom, lambda: None])
    finally:
        torch.set_num_threads(threads)


def test_constants_fill_float_integer_and_bool_tensors():
    outs = [torch.empty(3), torch.empty(2, dtype=torch.float64), torch.empty(4, dtype=torch.long),
            torch.empty(2, dtype=torch.bool)]
    values = [1.5, -2.0, 7.0, 1.0]
    jobs = [S.Job(o, S.FillDraw(v), 0, o.shape) for o, v in zip(outs, values, strict=True)]
    S.run_parallel(S.job_tasks(jobs))
    for out, value in zip(outs, values, strict=True):
        assert bool((out == torch.tensor(value).to(out.dtype)).all())
