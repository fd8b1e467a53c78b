"""The prompt decoder's refactored attentions and row-block stages give the plain decoder's
answers (speed is in benchmarks/bench_prompt.py)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_samcam._threads import run_blocks, torch_threads  # noqa: E402
from napari_samcam.sam._fast import accel as _accel  # noqa: E402
from napari_samcam.sam._fast import decoder as _decoder  # noqa: E402
from napari_samcam.sam._fast import folded_attention as _folded_attention  # noqa: E402
from napari_samcam.sam._fast import layers as _layers  # noqa: E402
from napari_samcam.sam._fast import staged_decoder as _staged_decoder  # noqa: E402


def _attention(dim=32, heads=4, downsample=2, seed=0):
    from segment_anything.modeling.transformer import Attention

    torch.manual_seed(seed)
    plain = Attention(dim, heads, downsample_rate=downsample).eval()
    with torch.no_grad():  # non-zero biases, so dropping or doubling one shows
        for linear in (plain.q_proj, plain.k_proj, plain.v_proj, plain.out_proj):
            linear.bias.normal_(0, 0.5)
    opts = _layers.options()
    return plain, _decoder._SamAttention(plain, opts)


@pytest.mark.parametrize("batch", [1, 3])
def test_folded_token_to_image_is_the_attention(batch):
    plain, fast = _attention()
    g = torch.Generator().manual_seed(1)
    queries = torch.randn(batch, 5, 32, generator=g)
    keys = torch.randn(1, 50, 32, generator=g)
    keys_pos = keys + torch.randn(1, 50, 32, generator=g)
    with torch.inference_mode():
        ref = plain(q=queries, k=keys_pos.expand(batch, -1, -1), v=keys.expand(batch, -1, -1))
        got = _folded_attention.token_to_image(fast, queries, keys_pos, keys)
    assert got.shape == ref.shape == (batch, 5, 32)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("projected", [False, True])
def test_folded_image_to_token_is_the_attention_plus_residual(projected):
    plain, fast = _attention()
    g = torch.Generator().manual_seed(2)
    tokens = torch.randn(2, 5, 32, generator=g)
    tokens_pos = tokens + torch.randn(2, 5, 32, generator=g)
    image_pos = torch.randn(1, 40, 32, generator=g)
    residual = torch.randn(2, 40, 32, generator=g)
    with torch.inference_mode():
        ref = residual + plain(q=image_pos.expand(2, -1, -1), k=tokens_pos, v=tokens)
        heads = None
        if projected:
            heads = _folded_attention.projected_heads(fast.q_proj(image_pos), fast.num_heads)
        got = _folded_attention.image_to_token(
            fast, None if projected else image_pos, tokens_pos, tokens, residual, heads
        )
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_folding_only_where_it_saves_work():
    _, fast = _attention(dim=32, heads=4, downsample=2)  # d = 16
    assert _folded_attention.foldable(fast, 3)  # 4 heads x 3 tokens < 16
    assert not _folded_attention.foldable(fast, 4)


@pytest.mark.parametrize("rows, workers", [(4096, 1), (4096, 2), (4096, 3), (64, 4), (5, 8)])
def test_row_blocks_cover_every_row_once(rows, workers):
    blocks = _staged_decoder.row_blocks(rows, workers)
    covered = np.concatenate([np.arange(rows)[b] for b in blocks])
    np.testing.assert_array_equal(covered, np.arange(rows))
    assert all(b.stop - b.start <= _staged_decoder._BLOCK_ROWS + 1 for b in blocks)
    if rows >= workers:
        assert len(blocks) % workers == 0  # whole rounds: no worker idles in the last one


def test_run_blocks_keeps_order_and_runs_each_job_with_one_torch_thread():
    import threading

    seen = []

    def task(job):
        seen.append(
            (threading.get_ident(), torch.get_num_threads(), torch.is_inference_mode_enabled())
        )
        return job * 2

    before = torch.get_num_threads()
    assert run_blocks(task, list(range(7)), workers=3) == [0, 2, 4, 6, 8, 10, 12]
    assert {(n, mode) for _, n, mode in seen} == {(1, True)}
    assert len({ident for ident, _, _ in seen}) > 1  # the caller and pool threads shared them
    assert torch.get_num_threads() == before


def _decoder_args(sam, n_boxes, seed, n_points=0):
    """Random image embedding and ``n_boxes`` box prompts, or one prompt of ``n_points``."""
    g = torch.Generator().manual_seed(seed)
    pe = sam.prompt_encoder.get_dense_pe()
    image = torch.randn(1, pe.shape[1], *pe.shape[-2:], generator=g)
    size = sam.image_encoder.img_size
    corner = torch.rand(n_boxes, 2, generator=g) * size * 0.5
    boxes = torch.cat([corner, corner + size * 0.4], 1) if n_boxes else None
    points = None
    if n_points:
        xy = torch.rand(1, n_points, 2, generator=g) * size
        points = (xy, torch.ones(1, n_points, dtype=torch.int))
    sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
    return dict(
        image_embeddings=image,
        image_pe=pe,
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
    )


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_staged_decoder_gives_the_plain_decoders_masks_and_scores(depth, workers):
    from conftest import build_tiny_sam

    sam = build_tiny_sam(decoder_depth=depth, seed=depth)
    decoder = _accel.accelerate_decoder(sam.mask_decoder)
    with torch.inference_mode():
        args = _decoder_args(sam, n_boxes=3, seed=workers)
        assert _staged_decoder.supports(decoder, args["sparse_prompt_embeddings"].shape[1] + 5)
        static: dict = {}
        for multimask in (False, True):
            ref_masks, ref_iou = sam.mask_decoder(**args, multimask_output=multimask)
            for _ in range(2):  # filling ``static``, then reading it
                masks, iou = decoder(
                    **args, multimask_output=multimask, static=static, workers=workers
                )
                assert masks.shape == ref_masks.shape and iou.shape == ref_iou.shape
                scale = float(ref_masks.abs().max())
                np.testing.assert_allclose(masks.numpy(), ref_masks.numpy(), atol=1e-5 * scale)
                np.testing.assert_allclose(iou.numpy(), ref_iou.numpy(), atol=1e-5)
        assert {"keys", "t2i_k", "t2i_v", "i2t_q", "i2t_q_heads"} <= set(static)


def test_many_point_prompts_fall_back_to_the_unstaged_decoder(tiny_sam):
    decoder = _accel.accelerate_decoder(tiny_sam.mask_decoder)
    # tiny SAM: 2 heads, d = 16, so folding pays below 8 tokens (5 output tokens + prompts)
    assert _staged_decoder.supports(decoder, 7)
    assert not _staged_decoder.supports(decoder, 8)
    with torch.inference_mode():
        args = _decoder_args(tiny_sam, 0, seed=0, n_points=6)
        tokens = args["sparse_prompt_embeddings"].shape[1] + 5  # + IoU and 4 mask tokens
        assert tokens == 12 and not _staged_decoder.supports(decoder, tokens)
        ref, _ = tiny_sam.mask_decoder(**args, multimask_output=False)
        got, _ = decoder(**args, multimask_output=False, static={}, workers=2)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), atol=1e-5 * float(ref.abs().max()))


def test_mask_upsampling_on_several_workers_gives_the_same_mask():
    from napari_samcam.sam.upsample import MaskUpsampler

    upsampler = MaskUpsampler.padded(256, 1024, (1024, 870), (2048, 1741))
    g = torch.Generator().manual_seed(3)
    low = torch.randn(256, 256, generator=g).cumsum(0).cumsum(1) / 50 - 3
    one = upsampler.mask(low, 0.0)
    assert 0 < one.sum() < one.size
    for workers in (2, 3, 5):
        np.testing.assert_array_equal(upsampler.mask(low, 0.0, workers=workers), one)


def test_prompt_threads_must_be_positive(tiny_sam):
    from napari_samcam.errors import InputError
    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    with pytest.raises(InputError, match="prompt_threads=0"):
        Segmenter(load_sam_model(tiny_sam, device="cpu"), prompt_threads=0)


def test_finite_check_is_skipped_only_for_content_seen_finite(tiny_segmenter, rng):
    from napari_samcam.errors import InputError

    image = rng.random((40, 60)).astype(np.float32)
    tiny_segmenter.segment(image, boxes=[[5, 5, 30, 40]])
    image[3, 4] = np.nan  # in place: same object, new content
    with pytest.raises(InputError, match=r"NaN|finite"):
        tiny_segmenter.segment(image, boxes=[[5, 5, 30, 40]])


@pytest.mark.parametrize("prompt_threads, expected", [(None, 2), (1, 1), (3, 3)])
def test_segmenter_passes_its_prompt_threads_to_the_staged_decoder(
    tiny_sam, rng, monkeypatch, prompt_threads, expected
):
    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    seen = []
    real = _staged_decoder.staged_decode

    def spy(*args):
        seen.append(args[-1])
        return real(*args)

    monkeypatch.setattr(_staged_decoder, "staged_decode", spy)
    segmenter = Segmenter(load_sam_model(tiny_sam, device="cpu"), prompt_threads=prompt_threads)
    image = rng.integers(0, 255, (48, 64), dtype=np.uint8)
    with torch_threads(2):  # the caller's torch threads: what None resolves to
        segmenter.segment(image, boxes=[[5, 5, 30, 40]])
        embedding = segmenter.embed(image)
        segmenter.predict_logits(embedding, boxes=np.array([[5, 5, 30, 40]]))
    assert seen == [expected, expected]


def test_prompting_the_same_array_again_reuses_its_key_only_if_the_content_is_the_same(
    tiny_sam, rng, monkeypatch
):
    from napari_samcam import segment as segment_module
    from napari_samcam.sam_models import load_sam_model
    from napari_samcam.segment import Segmenter

    model = load_sam_model(tiny_sam, device="cpu")
    segmenter = Segmenter(model)
    image = rng.integers(0, 255, (48, 64)).astype(np.float32)
    box = [[5, 5, 30, 40]]
    first = segmenter.segment(image, boxes=box)[0]

    threads_seen = []
    real_key = segment_module.embedding_key

    def key_spy(array, **kwargs):
        threads_seen.append(kwargs.get("threads"))
        return real_key(array, **kwargs)

    monkeypatch.setattr(segment_module, "embedding_key", key_spy)
    again = segmenter.segment(image, boxes=box)[0]
    assert threads_seen == [1]  # hashed beside the decoding, on one core
    np.testing.assert_array_equal(again.mask, first.mask)
    assert again.score == first.score and segmenter.encoder_calls == 1

    image[10:40, 10:50] = 255 - image[10:40, 10:50]  # in place: same object, new content
    threads_seen.clear()
    edited = segmenter.segment(image, boxes=box)[0]
    assert threads_seen == [1, None]  # the guess failed: the key computed again, in full
    assert segmenter.encoder_calls == 2
    fresh = Segmenter(model).segment(image.copy(), boxes=box)[0]
    np.testing.assert_array_equal(edited.mask, fresh.mask)
    assert edited.score == pytest.approx(fresh.score, abs=1e-6)
    assert edited.score != pytest.approx(first.score, abs=1e-6)

    threads_seen.clear()
    segmenter.segment(image.copy(), boxes=box)  # same content, another object: no guess
    assert threads_seen == [None] and segmenter.encoder_calls == 2
