"""Backbones: the EfficientNet-Lite0 weight mapping is complete and checked, the cheap features
match brute-force values, MiniLM matches sentence-transformers, and the production loaders
(open_clip, torchaudio bundles) run with small randomly initialised architectures, since hub
weights cannot be fetched here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cinefuse.errors import CinefuseError
from cinefuse.extract.backbones import effnet
from cinefuse.extract.backbones.lowlevel import frame_statistics, pool_statistics
from cinefuse.extract.backbones.logmel import LogMel
from cinefuse.extract.backbones.meta import LanguageMeta, YearMeta, parse_year
from cinefuse.extract.backbones.tfidf import TfIdf

TINY_CLIP = str(Path(__file__).parent / "data" / "tiny-clip.json")


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite0
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lite0_source():
    return torch.load(effnet.weights_path(), map_location="cpu", weights_only=True)


def test_effnet_mapping_is_complete_and_one_to_one(lite0_source):
    import timm

    target = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000).state_dict()
    mapped = effnet.map_state_dict(lite0_source, target)
    assert len(lite0_source) == len(target) == len(mapped) == 296
    assert set(mapped) == set(target)
    assert all(tuple(mapped[k].shape) == tuple(target[k].shape) for k in mapped)
    # spot checks of the flat -> (stage, block) numbering and the layer renames
    assert effnet.map_key("_blocks.0._project_conv.weight") == "blocks.0.0.conv_pw.weight"
    assert effnet.map_key("_blocks.1._expand_conv.weight") == "blocks.1.0.conv_pw.weight"
    assert effnet.map_key("_blocks.7._bn1.running_var") == "blocks.3.2.bn2.running_var"
    assert effnet.map_key("_blocks.15._project_conv.weight") == "blocks.6.0.conv_pwl.weight"
    assert effnet.map_key("_fc.bias") == "classifier.bias"


def test_effnet_mapping_fails_loudly(lite0_source):
    import timm

    target = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000).state_dict()
    with pytest.raises(effnet.WeightMappingError, match="unmapped EfficientNet-Lite0 key '_blocks.16"):
        effnet.map_state_dict({**lite0_source, "_blocks.16._bn1.weight": torch.zeros(1)}, target)
    with pytest.raises(effnet.WeightMappingError, match="unmapped EfficientNet-Lite0 key 'extra.weight'"):
        effnet.map_state_dict({**lite0_source, "extra.weight": torch.zeros(1)}, target)
    bad = dict(lite0_source)
    bad["_conv_head.weight"] = torch.zeros(1280, 320, 3, 3)
    with pytest.raises(effnet.WeightMappingError, match=r"shape \(1280, 320, 3, 3\) != timm's \(1280, 320, 1, 1\)"):
        effnet.map_state_dict(bad, target)
    partial = {k: v for k, v in lite0_source.items() if not k.startswith("_fc.")}
    with pytest.raises(effnet.WeightMappingError, match=r"left without weights: \['classifier.bias', 'classifier.weight'\]"):
        effnet.map_state_dict(partial, target)


BROWN_BEAR, ORANGUTAN = 294, 365  # ImageNet-1k class indices


def test_effnet_classifies_real_frames_sensibly(shared_media, lite0_source):
    """The two clip-video-encode clips show brown bears on grass and an orangutan (looked at by
    eye): the mapped network must say so, confidently, for every sampled frame. The features
    are the backbone's own ``embed`` (its preprocessing included), fed to the classifier layer:
    a wrong input scaling in ``embed`` loses the labels."""
    from cinefuse.extract.decode import sample_frames

    model = effnet.build_model()
    assert torch.equal(model.state_dict()["blocks.3.2.bn2.running_var"], lite0_source["_blocks.7._bn1.running_var"])
    backbone = effnet.EffNetLite0(frames=4)
    for name, label in (("clip-video-encode__vid1.mp4", BROWN_BEAR), ("clip-video-encode__vid2.mp4", ORANGUTAN)):
        frames = sample_frames(str(shared_media / "video" / name), 4, 224).frames
        features = backbone.embed(torch.from_numpy(frames))
        with torch.inference_mode():
            logits = model.classifier(features)
        assert features.shape == (4, 1280) and (features >= 0).all()  # ReLU6 head, averaged
        assert torch.isfinite(logits).all() and logits.shape == (4, 1000)
        assert logits.argmax(-1).tolist() == [label] * 4
        assert logits.softmax(-1)[:, label].max() > 0.9


def test_effnet_embed_preprocessing_against_a_reference():
    """``embed`` = TF EfficientNet-Lite scaling (x - 127) / 128 on RGB, NCHW, the pooled 1280-d
    head; checked against that recipe written out here, and shown to tell it from the ImageNet
    mean/std scaling a timm default would use."""
    backbone = effnet.EffNetLite0(frames=2)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    frames[1, :112] = 40  # some structure, so the two scalings give different pictures
    model = effnet.build_model()
    x = torch.from_numpy(frames.transpose(0, 3, 1, 2).astype(np.float32))
    with torch.inference_mode():
        expected = model.global_pool(model.forward_features((x - 127.0) / 128.0)).flatten(1)
        imagenet = (x / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
            [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        other = model.global_pool(model.forward_features(imagenet)).flatten(1)
    ours = backbone.embed(torch.from_numpy(frames))
    tolerance = 1e-3 * expected.abs().max()
    assert (ours - expected).abs().max() < tolerance
    assert (other - expected).abs().max() > 100 * tolerance
    # frames decoded larger than 224 (another backbone asked for more) are resized to 224 first:
    # a smooth picture at 448 gives (nearly) the features of the same picture at 224
    yy, xx = np.mgrid[0:448, 0:448] / 448
    smooth = np.stack([255 * xx, 255 * yy, 128 + 100 * np.sin(6 * xx + 4 * yy)], axis=-1).astype(np.uint8)[None]
    small = torch.from_numpy(np.ascontiguousarray(smooth[:, ::2, ::2]))
    a, b = backbone.embed(torch.from_numpy(smooth))[0], backbone.embed(small)[0]
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99


def test_effnet_backbone_embeds_frames():
    backbone = effnet.EffNetLite0(frames=4)
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8))
    out = backbone.embed(frames)
    assert out.shape == (3, 1280) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert [s.name for s in backbone.sets()] == ["visual/effnet_frames", "visual/effnet"]
    attrs = backbone.attrs()
    assert attrs["weights_sha256"] == "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


# ---------------------------------------------------------------------------------------------
# low-level statistics and log-mel
# ---------------------------------------------------------------------------------------------
def test_lowlevel_statistics_golden_values():
    gray = np.full((8, 8, 3), 128, np.uint8)
    half = np.zeros((8, 8, 3), np.uint8)
    half[:, 4:] = 255  # white right half: a vertical edge
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    stats = frame_statistics(np.stack([gray, half, red]))
    assert stats[0].tolist() == pytest.approx([128 / 255, 0, 0, 0, 0], abs=1e-6)
    assert stats[1, 0] == pytest.approx(0.5) and stats[1, 1] == pytest.approx(0.5)
    assert stats[1, 2] == pytest.approx(0.0, abs=1e-6)  # grey levels only: no colour
    # Sobel on the 6x6 interior: columns 2 and 3 straddle the edge (|gx| = 4 > threshold)
    assert stats[1, 3] == pytest.approx(2 / 6)
    # brute force motion: mean |Y1 - Y0|
    y0 = 128 / 255
    y1 = np.where(np.arange(8) >= 4, 1.0, 0.0)
    assert stats[1, 4] == pytest.approx(np.abs(y1 - y0).mean(), abs=1e-6)
    # pure red: rg = 255, yb = 127.5, no spread -> 0.3 * sqrt(255^2 + 127.5^2) / 255
    assert stats[2, 2] == pytest.approx(0.3 * np.sqrt(255**2 + 127.5**2) / 255, rel=1e-6)
    assert stats[2, 0] == pytest.approx(0.299, abs=1e-6)
    pooled = pool_statistics(stats)
    assert pooled[:4] == pytest.approx(stats[:, :4].mean(0)) and pooled[4] == pytest.approx(stats[1:, 4].mean())
    assert pooled[9] == pytest.approx(stats[1:, 4].std())


def test_logmel_against_torchaudio_melspectrogram():
    """The reference is torchaudio's MelSpectrogram with the VGGish front end written out here
    (25 ms Hann windows, 10 ms hop, 64 bands 125-7500 Hz, power 2, log(mel + 0.01)), pooled and
    summarised by brute force; not the code under test."""
    import torchaudio

    sr = 16000
    t = np.arange(int(0.96 * sr)) / sr
    rng = np.random.default_rng(0)
    windows = np.stack([np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 3000 * t) * np.linspace(0, 1, t.size),
                        0.1 * rng.normal(size=t.size)]).astype(np.float32)
    backbone = LogMel(sr, 64, max_windows=62, steps=4)
    out = backbone.compute(windows)
    assert out["audio/logmel_seq"].shape == (12, 64) and out["audio/logmel_stats"].shape == (256,)
    reference = torchaudio.transforms.MelSpectrogram(sample_rate=sr, n_fft=400, win_length=400, hop_length=160,
                                                     f_min=125.0, f_max=7500.0, n_mels=64, center=False, power=2.0)
    logmel = np.log(reference(torch.from_numpy(windows)).numpy() + 0.01)  # (W, 64, F)
    frames = logmel.shape[2]
    assert frames == (15360 - 400) // 160 + 1 == 94
    # 4 steps per window: step i averages frames floor(i F / 4) .. ceil((i + 1) F / 4) - 1
    seq = np.stack([np.stack([logmel[w, :, (i * frames) // 4: -((-(i + 1) * frames) // 4)].mean(axis=1)
                              for i in range(4)]) for w in range(3)]).reshape(12, 64)
    assert np.allclose(out["audio/logmel_seq"], seq, atol=1e-4)
    every = logmel.transpose(1, 0, 2).reshape(64, -1)  # (bands, every frame of every window)
    delta = np.abs(np.diff(logmel, axis=2)).mean(axis=(0, 2))
    stats = np.concatenate([every.mean(1), every.std(1), every.max(1), delta])
    assert np.allclose(out["audio/logmel_stats"], stats, atol=1e-4)
    # the peak band of each tone window is the band whose filter responds most at that frequency
    fbanks = torchaudio.functional.melscale_fbanks(201, 125.0, 7500.0, 64, sr).numpy()
    assert out["audio/logmel_seq"][0].argmax() == fbanks[1000 * 400 // sr].argmax()
    assert out["audio/logmel_seq"][7].argmax() == fbanks[3000 * 400 // sr].argmax()


# ---------------------------------------------------------------------------------------------
# text and metadata
# ---------------------------------------------------------------------------------------------
def test_minilm_matches_sentence_transformers(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from cinefuse.extract.backbones.minilm import MiniLM, model_path

    texts = ["Toy Story (1995). A cowboy doll is threatened by a new spaceman toy.", "A quiet film about rain.", "x"]
    ours = MiniLM().embed(texts)
    reference = SentenceTransformer(str(model_path()), device="cpu").encode(texts, convert_to_numpy=True)
    assert ours.shape == (3, 384)
    assert np.abs(ours - reference).max() < 1e-5
    assert np.linalg.norm(ours, axis=1) == pytest.approx(np.ones(3), abs=1e-5)


def test_minilm_vectors_do_not_depend_on_the_batch():
    """Batched by token length: each text's vector is the one it gets alone, whatever the order
    and whatever long text shares the call."""
    from cinefuse.extract.backbones.minilm import MiniLM

    texts = ["Heat (1995)", "Toy Story (1995). pixar, fun, " * 40, "x", "A quiet film about rain.", "Up"]
    backbone = MiniLM(batch_size=2)
    together = backbone.embed(texts)
    alone = np.concatenate([backbone.embed([t]) for t in texts])
    assert np.abs(together - alone).max() < 1e-5
    order = [3, 0, 4, 1, 2]
    assert np.array_equal(backbone.embed([texts[i] for i in order]), backbone.embed([texts[i] for i in order]))
    assert np.abs(backbone.embed([texts[i] for i in order]) - together[order]).max() < 1e-5
    assert backbone.embed([]).shape == (0, 384)


def test_tfidf_fixed_shape_and_similarity():
    corpus = ["a dog chases a ball in the park", "the dog sleeps in the park", "rockets fly to the moon",
              "astronauts land on the moon", ""]
    backbone = TfIdf(dim=8).fit(corpus)
    vectors, valid = backbone.transform(corpus + ["zzzz qqqq"])
    assert vectors.shape == (6, 8) and valid.tolist() == [True, True, True, True, False, False]
    assert backbone.components == 3  # min(dim, docs - 1, terms - 1): zero-padded to 8
    assert np.allclose(vectors[:, 3:], 0) and np.linalg.norm(vectors[:4], axis=1) == pytest.approx(np.ones(4), abs=1e-5)
    sims = vectors[:4] @ vectors[:4].T
    assert sims[0, 1] > sims[0, 2] and sims[2, 3] > sims[1, 3]  # shared words -> closer
    again, _ = TfIdf(dim=8).fit(corpus).transform(corpus)
    assert np.array_equal(again, vectors[:5])  # deterministic refit


def test_year_and_language():
    assert parse_year("1995") == 1995 and parse_year("", "Toy Story (1995)") == 1995 and parse_year("", "Heat") is None
    year = YearMeta()
    vector, status = year.encode({"year": "1995.0"})
    assert status == "ok" and vector[0] == pytest.approx(5 / 30) and vector[1 + 9] == 1 and vector.sum() == pytest.approx(1 + 5 / 30)
    assert year.encode({"year": "1850"})[0][1] == 1  # earlier years fall in the first decade
    assert year.encode({"title": "no year"}) == (None, "no year")
    language = LanguageMeta(["en", "fr"])
    assert language.encode({"language": "French"})[0].tolist() == [0, 1, 0]
    assert language.encode({"language": "en-US"})[0].tolist() == [1, 0, 0]
    assert language.encode({"language": "tlh"})[0].tolist() == [0, 0, 1]
    assert language.encode({}) == (None, "no language")


# ---------------------------------------------------------------------------------------------
# production loaders with small random architectures
# ---------------------------------------------------------------------------------------------
def test_openclip_loader_random_and_local_checkpoint(tmp_path):
    import open_clip

    from cinefuse.extract.backbones.openclip import OpenClipImage, OpenClipText

    image = OpenClipImage("openclip:tiny-clip/none", frames=4, configs=[TINY_CLIP])
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8))
    out = image.embed(frames)
    assert out.shape == (2, 32) and image.input_size == 32
    assert [s.name for s in image.sets()] == ["visual/openclip_tiny-clip_frames", "visual/openclip_tiny-clip"]
    assert image.attrs()["weights"] == "random initialisation (testing only)"
    # a local checkpoint goes through open_clip's own loading code and gives back these weights
    model, _ = image.load()
    checkpoint = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), checkpoint)
    text = OpenClipText(f"openclip:tiny-clip@{checkpoint}", configs=[TINY_CLIP])
    reloaded, tokenizer = text.load()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))
    vectors = text.embed(["a dog", "the moon"])
    with torch.inference_mode():
        expected = reloaded.encode_text(tokenizer(["a dog", "the moon"])).numpy()
    assert np.allclose(vectors, expected) and text.attrs()["weights_sha256"]
    with pytest.raises(CinefuseError, match="open_clip has no model 'no-such-model'"):
        OpenClipImage("openclip:no-such-model/none", frames=4).load()
    assert open_clip.list_models()


def test_torchaudio_bundle_loader_random():
    from cinefuse.extract.backbones.torchaudio_bundle import TorchaudioBundle

    backbone = TorchaudioBundle("torchaudio:WAV2VEC2_BASE@random", max_windows=62, sample_rate=16000)
    torch.manual_seed(0)
    out = backbone.embed(torch.randn(2, 15360) * 0.1)
    assert out.shape == (2, 768) and torch.isfinite(out).all()
    assert [s.name for s in backbone.sets()] == ["audio/wav2vec2_base_windows", "audio/wav2vec2_base"]
    assert backbone.attrs()["weights"] == "random initialisation (testing only)"
    with pytest.raises(CinefuseError, match="torchaudio has no wav2vec2-family bundle 'NOPE'"):
        TorchaudioBundle("torchaudio:NOPE", max_windows=1, sample_rate=16000)
    with pytest.raises(CinefuseError, match="checkpoint /no/such.pt not found"):
        TorchaudioBundle("torchaudio:HUBERT_BASE@/no/such.pt", max_windows=1, sample_rate=16000)


@pytest.mark.slow
def test_torchaudio_bundle_local_state_dict(tmp_path):
    """~20 s: a 95M-parameter architecture built twice and a 380 MB state dict written and read."""
    from cinefuse.extract.backbones.torchaudio_bundle import TorchaudioBundle

    backbone = TorchaudioBundle("torchaudio:WAV2VEC2_BASE@random", max_windows=62, sample_rate=16000)
    windows = torch.randn(2, 15360) * 0.1
    out = backbone.embed(windows)
    path = tmp_path / "w2v.pt"
    torch.save(backbone.load().state_dict(), path)
    again = TorchaudioBundle(f"torchaudio:WAV2VEC2_BASE@{path}", max_windows=62, sample_rate=16000)
    assert torch.allclose(again.embed(windows), out, atol=1e-5)
    assert again.attrs()["weights"] == "local state dict w2v.pt"


# ---------------------------------------------------------------------------------------------
# timm:MODEL[/TAG][@PATH]
# ---------------------------------------------------------------------------------------------
def _timm_reference(model, frames: np.ndarray) -> torch.Tensor:
    """timm's own eval pipeline: its data config, ``create_transform`` on PIL images, the model."""
    from PIL import Image
    from timm.data import create_transform, resolve_model_data_config

    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    x = torch.stack([transform(Image.fromarray(frame)) for frame in frames])
    with torch.inference_mode():
        return model(x)


def test_timm_backbone_uses_the_models_own_preprocessing():
    from cinefuse.extract.backbones.timm_image import TimmImage

    backbone = TimmImage("timm:test_vit/none", frames=4)
    # test_vit's data config: 160x160 input, crop_pct 0.95, mean = std = 0.5
    assert backbone.crop == (160, 160) and backbone.input_size == 168 and backbone.dim == 64
    assert [s.name for s in backbone.sets()] == ["visual/timm_test_vit_frames", "visual/timm_test_vit"]
    assert [s.shape for s in backbone.sets()] == [(4, 64), (64,)]
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 168, 168, 3), dtype=np.uint8)
    ours = backbone.embed(torch.from_numpy(frames))
    reference = _timm_reference(backbone.load(), frames)  # at 168 timm's resize is the identity
    assert ours.shape == (3, 64) and torch.allclose(ours, reference, atol=1e-5)
    # mean/std 0.5 is not ImageNet's: the same frames normalised the ImageNet way differ
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()[:, :, 4:164, 4:164] / 255
    imagenet = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        assert (backbone.load()(imagenet) - reference).abs().max() > 100 * 1e-5
    # decoded larger (another backbone asked for 224): resized with the model's bicubic first
    yy, xx = np.mgrid[0:224, 0:224] / 224
    smooth = np.stack([255 * xx, 255 * yy, 128 + 100 * np.sin(6 * xx + 4 * yy)], axis=-1).astype(np.uint8)[None]
    a, b = backbone.embed(torch.from_numpy(smooth))[0], _timm_reference(backbone.load(), smooth)[0]
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.999
    assert backbone.attrs()["weights"] == "random initialisation (testing only)"
    assert "centre crop 160x160 (crop_pct 0.95), mean (0.5, 0.5, 0.5)" in backbone.attrs()["preprocessing"]


def test_timm_local_checkpoint_and_errors(tmp_path, monkeypatch):
    import timm

    from cinefuse.extract.backbones.timm_image import TimmImage

    trained = timm.create_model("test_vit", pretrained=False, num_classes=10)  # a checkpoint with a head
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "vit.pth"
    torch.save({"state_dict": trained.state_dict()}, path)
    backbone = TimmImage(f"timm:test_vit@{path}", frames=2)
    loaded = backbone.load()
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in loaded.state_dict().items())
    frames = np.random.default_rng(1).integers(0, 256, (2, 168, 168, 3), dtype=np.uint8)
    with torch.inference_mode():
        x = backbone.preprocess(torch.from_numpy(frames))
        expected = trained.forward_head(trained.forward_features(x), pre_logits=True)
    assert torch.allclose(backbone.embed(torch.from_numpy(frames)), expected, atol=1e-6)
    assert backbone.attrs()["weights"] == "local checkpoint vit.pth" and len(backbone.attrs()["weights_sha256"]) == 64
    # random initialisation is seeded: a second build (cache cleared) has the same weights
    a = TimmImage("timm:test_vit/none", frames=2).load()
    assert not torch.equal(a.state_dict()["cls_token"], loaded.state_dict()["cls_token"])
    from cinefuse.extract.backbones import timm_image

    timm_image._LOADED.clear()
    b = TimmImage("timm:test_vit/none", frames=2).load()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())

    other = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet", pretrained=False).state_dict(), other)
    with pytest.raises(CinefuseError, match=r"checkpoint resnet.pth does not fit timm's test_vit: missing \['blocks"):
        TimmImage(f"timm:test_vit@{other}", frames=2).load()
    with pytest.raises(CinefuseError, match="backbone timm:test_vit@/no/such.pth: checkpoint /no/such.pth not found"):
        TimmImage("timm:test_vit@/no/such.pth", frames=2)
    with pytest.raises(CinefuseError, match="timm has no model 'no_such_net'; see timm.list_models()"):
        TimmImage("timm:no_such_net/none", frames=2).load()
    with pytest.raises(CinefuseError, match=r"timm has no pretrained tag 'nope' for test_vit"):
        TimmImage("timm:test_vit/nope", frames=2).load()
    import huggingface_hub.constants

    # no network here: the hub fetch fails, with one clear line (offline mode skips the retries;
    # the environment variable is read when huggingface_hub is imported, so set the constant)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CinefuseError, match=r"backbone timm:test_vit/r160_in1k: cannot fetch the pretrained weights .*"
                                            r"or pass a local checkpoint as timm:MODEL@PATH"):
        TimmImage("timm:test_vit/r160_in1k", frames=2).load()


def test_timm_dinov2_random_init_has_the_thesis_preprocessing():
    """The thesis's frame model: DINOv2 ViT-S/14 at 518 px, ImageNet mean/std, no crop."""
    from cinefuse.extract.backbones.timm_image import TimmImage

    backbone = TimmImage("timm:vit_small_patch14_dinov2/none", frames=16)
    assert backbone.crop == (518, 518) and backbone.input_size == 518 and backbone.dim == 384
    assert backbone.data_config["mean"] == (0.485, 0.456, 0.406)
    out = backbone.embed(torch.from_numpy(np.full((1, 518, 518, 3), 100, np.uint8)))
    assert out.shape == (1, 384) and torch.isfinite(out).all()


def test_timm_backbone_in_a_run(tmp_path):
    from cinefuse.extract.config import ExtractConfig
    from cinefuse.extract.run import run_extract
    from cinefuse.store import open_store
    from media_fixtures import encode_video

    encode_video(tmp_path / "a.mp4", seconds=1)
    (tmp_path / "items.csv").write_text("id,video\na,a.mp4\n", encoding="utf-8")
    summary = run_extract(ExtractConfig(manifest=str(tmp_path / "items.csv"), store=str(tmp_path / "s"), frames=3,
                                        workers=0, visual=["timm:test_vit/none"], audio=[], text=[], meta=[],
                                        progress=False))
    assert summary["by_status"] == {"ok": 1}
    sets = open_store(tmp_path / "s").feature_sets()
    assert {name: tuple(info.shape) for name, info in sets.items()} == {
        "visual/timm_test_vit_frames": (3, 64), "visual/timm_test_vit": (64,)}
    assert sets["visual/timm_test_vit"].attrs["backbone"] == "timm test_vit"
    assert sets["visual/timm_test_vit"].attrs["image_size"] == 224  # decoded at the run's image_size, resized here
