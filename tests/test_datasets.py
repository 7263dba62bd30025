import json

import numpy as np
import pytest
from conftest import camvid_root, write_png

from edgeseg.data import build_dataset
from edgeseg.data.synthetic import SYNTHETIC_CLASSES, Synthetic, render_scene
from edgeseg.errors import ConfigError, DataError


def camvid_layout(root, n=2, size=(12, 16), void_value=11, split="train"):
    rng = np.random.default_rng(0)
    for i in range(n):
        write_png(root / split / f"f{i}.png", rng.integers(0, 255, size + (3,), dtype=np.uint8))
        lab = rng.integers(0, 11, size, dtype=np.uint8)
        lab[0, 0] = void_value
        write_png(root / f"{split}annot" / f"f{i}.png", lab)
    return root


def test_camvid_maps_void_to_ignore(tmp_path):
    ds = build_dataset("camvid", camvid_layout(tmp_path), "train")
    s = ds[0]
    assert s.image.shape == (12, 16, 3) and s.image.dtype == np.uint8
    assert s.label[0, 0] == 255 and s.label.max() == 255 and (s.label[s.label != 255] < 11).all()
    assert ds.info.num_classes == 11 and ds.info.class_names[2] == "Pole"


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    ids = np.array([[7, 8, 26, 0], [33, 24, 1, 255]], dtype=np.uint8)
    write_png(tmp_path / "leftImg8bit/val/ulm/ulm_000001_000019_leftImg8bit.png", np.zeros((2, 4, 3), np.uint8))
    write_png(tmp_path / "gtFine/val/ulm/ulm_000001_000019_gtFine_labelIds.png", ids)
    ds = build_dataset("cityscapes", tmp_path, "val")
    np.testing.assert_array_equal(ds[0].label, [[0, 1, 13, 255], [18, 11, 255, 255]])
    assert ds[0].name == "ulm_000001_000019" and ds.info.num_classes == 19


def test_folder_dataset_reads_classes_json_and_maps_its_ignore_value(tmp_path):
    write_png(tmp_path / "images/a.png", np.zeros((4, 4, 3), np.uint8))
    write_png(tmp_path / "masks/a.png", np.array([[0, 1, 2, 9]] * 4, np.uint8))
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["x", "y", "z"], "ignore_index": 9}))
    ds = build_dataset("folder", tmp_path, "val")
    np.testing.assert_array_equal(ds[0].label[0], [0, 1, 2, 255])
    assert ds.info.palette and len(ds.info.palette) == 3


@pytest.mark.parametrize(
    "doc,match",
    [
        ("not json", "not valid JSON"),
        (json.dumps({"names": []}), "non-empty list"),
        (json.dumps({"names": ["a", "a"]}), "duplicate"),
        (json.dumps({"names": ["a", "b"], "ignore_index": 1}), "ignore_index"),
        (json.dumps({"names": ["a", "b"], "palette": [[0, 0, 0]]}), "palette"),
        (json.dumps({"names": ["a"], "colours": []}), "unknown keys"),
    ],
)
def test_malformed_classes_json(tmp_path, doc, match):
    write_png(tmp_path / "images/a.png", np.zeros((4, 4, 3), np.uint8))
    write_png(tmp_path / "masks/a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "classes.json").write_text(doc)
    with pytest.raises(DataError, match=match) as err:
        build_dataset("folder", tmp_path, "val")
    assert "classes.json" in str(err.value)


def test_bad_samples_name_the_file_and_skip_bad_counts_them(tmp_path, caplog):
    root = camvid_layout(tmp_path, n=4)
    write_png(root / "train" / "orphan.png", np.zeros((12, 16, 3), np.uint8))  # image without label
    with pytest.raises(DataError, match=r"orphan\.png: no label"):
        build_dataset("camvid", root, "train")
    (root / "trainannot" / "f1.png").write_bytes(b"not a png")  # corrupt
    write_png(root / "trainannot" / "f2.png", np.zeros((5, 5), np.uint8))  # size mismatch
    write_png(root / "trainannot" / "f3.png", np.full((12, 16), 40, np.uint8))  # bad values
    with caplog.at_level("WARNING"):
        ds = build_dataset("camvid", root, "train", skip_bad=True)
    assert len(ds) == 1 and ds.skipped == 4
    assert f"camvid/train at {root.resolve()}: 4 of 5 samples skipped (--skip-bad)" in caplog.text  # said for every command that opens it
    (root / "train" / "orphan.png").unlink()
    ds = build_dataset("camvid", root, "train")
    with pytest.raises(DataError, match=r"f1\.png: cannot read label"):
        ds[1]
    with pytest.raises(DataError, match=r"f2\.png: label is 5x5 but its image f2\.png is 16x12"):
        ds[2]
    with pytest.raises(DataError, match=r"f3\.png: label values \[40\]"):
        ds[3]


def test_missing_root_split_and_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="not found"):
        build_dataset("camvid", tmp_path / "nope", "train")
    with pytest.raises(DataError, match="split folder 'val'"):
        build_dataset("camvid", camvid_layout(tmp_path), "val")
    with pytest.raises(DataError, match="splits"):
        build_dataset("camvid", tmp_path, "holdout")
    with pytest.raises(ConfigError, match="unknown dataset 'kitti'.*synthetic"):
        build_dataset("kitti", tmp_path)
    with pytest.raises(ConfigError, match="needs --data"):
        build_dataset("folder", None)
    with pytest.raises(ConfigError, match="--data .*: the synthetic data set is generated"):  # never ignored
        build_dataset("synthetic", tmp_path)


def test_synthetic_is_deterministic_and_has_thin_and_small_classes():
    a, b = Synthetic("train"), Synthetic("train")
    np.testing.assert_array_equal(a[3].image, b[3].image)
    np.testing.assert_array_equal(a[3].label, b[3].label)
    assert not np.array_equal(a[3].label, a[4].label)
    assert not np.array_equal(Synthetic("val")[3].label, a[3].label)
    counts = np.zeros(256)
    pole_widths = []
    for i in range(12):
        s = a[i]
        assert s.image.shape == (512, 1024, 3) and s.label.shape == (512, 1024)
        counts += np.bincount(s.label.ravel(), minlength=256)
        mask = (s.label == SYNTHETIC_CLASSES.index("pole")).astype(np.int8)
        edges = np.diff(np.pad(mask, ((0, 0), (1, 1))), axis=1)
        starts, ends = np.nonzero(edges == 1), np.nonzero(edges == -1)
        pole_widths += list(ends[1] - starts[1])  # horizontal run lengths
    assert (counts[: len(SYNTHETIC_CLASSES)] > 0).all(), "every class appears"
    assert counts[SYNTHETIC_CLASSES.index("sign")] / counts.sum() < 0.01  # small
    assert np.median(pole_widths) <= 4  # poles are a few pixels wide
    assert set(np.unique(a[0].label)) <= set(range(9)) | {255}


def test_render_scene_depends_only_on_seed():
    np.testing.assert_array_equal(render_scene(5)[1], render_scene(5)[1])


def test_real_camvid_loads():
    ds = build_dataset("camvid", camvid_root(), "val")
    assert len(ds) == 101
    s = ds[0]
    assert s.image.shape == (360, 480, 3) and s.label.shape == (360, 480)


def test_subset_is_independent_of_its_source(shared_folder):
    from edgeseg.data.base import ConcatDataset

    for ds in (Synthetic("val"), build_dataset("folder", str(shared_folder), "train")):
        for source in (ds, ConcatDataset([ds, ds])):
            n = len(source)
            names = [source.sample_name(i) for i in (2, 0)]
            sub = source.subset([2, 0])
            assert len(sub) == 2 and len(source) == n
            assert [sub.sample_name(i) for i in range(2)] == names
            sub.subset([1])
            assert len(sub) == 2


@pytest.mark.parametrize("value", [256, 267, 40000])
def test_16_bit_label_values_above_255_are_refused_by_every_data_set_kind(tmp_path, value):
    """A 16-bit mask's values are never cast into 8 bits first (CamVid read 256 as Sky, 267 as void)."""
    from PIL import Image

    def sixteen(path, shape):
        path.parent.mkdir(parents=True, exist_ok=True)
        lab = np.zeros(shape, np.uint16)
        lab[0, 0] = value
        Image.fromarray(lab).save(path)

    camvid_layout(tmp_path / "camvid", n=1)
    sixteen(tmp_path / "camvid" / "trainannot" / "f0.png", (12, 16))
    write_png(tmp_path / "cs/leftImg8bit/val/ulm/ulm_000001_000019_leftImg8bit.png", np.zeros((2, 4, 3), np.uint8))
    sixteen(tmp_path / "cs/gtFine/val/ulm/ulm_000001_000019_gtFine_labelIds.png", (2, 4))
    write_png(tmp_path / "folder/images/a.png", np.zeros((4, 4, 3), np.uint8))
    sixteen(tmp_path / "folder/masks/a.png", (4, 4))
    (tmp_path / "folder/classes.json").write_text(json.dumps({"names": ["x", "y"]}))
    for kind, root, split in (("camvid", "camvid", "train"), ("cityscapes", "cs", "val"), ("folder", "folder", "train")):
        with pytest.raises(DataError, match=rf"\.png: label values 0\.\.{value}; expected 8-bit values"):
            build_dataset(kind, tmp_path / root, split)[0]


def test_a_folder_with_split_folders_never_serves_another_split_in_place_of_the_one_asked_for(tmp_path):
    """ROOT/train/images exists, ROOT/nosuch does not: refused naming the splits it has (the root's
    own images/ or nothing were read before); a flat folder serves any split."""
    from conftest import make_folder_dataset

    root = make_folder_dataset(tmp_path / "split", n_train=2, n_val=1)
    with pytest.raises(DataError, match="no split 'nosuch'.*its splits: train, val"):
        build_dataset("folder", root, "nosuch")
    write_png(tmp_path / "flat/images/a.png", np.zeros((4, 4, 3), np.uint8))
    write_png(tmp_path / "flat/masks/a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "flat/classes.json").write_text(json.dumps({"names": ["x", "y"]}))
    assert len(build_dataset("folder", tmp_path / "flat", "val")) == 1


def test_a_1_bit_mask_reads_as_classes_0_and_1(tmp_path):
    from PIL import Image

    from edgeseg.data.base import read_label

    bits = np.zeros((4, 6), bool)
    bits[1:3, 2:5] = True
    Image.fromarray(bits).convert("1").save(tmp_path / "m.png")
    assert Image.open(tmp_path / "m.png").mode == "1"
    np.testing.assert_array_equal(read_label(tmp_path / "m.png"), bits.astype(np.uint8))


def test_a_split_with_no_labelled_pixel_is_refused_by_train_and_eval(cli_run, tiny_checkpoint, tmp_path):
    """All-void labels (an auto-labelling at threshold 1): training learnt nothing and reported a val
    mIoU of nan, eval printed nan and wrote NaN into JSON; each now one line, exit 2."""
    from conftest import make_folder_dataset

    root = make_folder_dataset(tmp_path / "void", n_train=2, n_val=2)
    for mask in root.glob("*/masks/*.png"):
        write_png(mask, np.full((36, 48), 255, np.uint8))
    code, _, err = cli_run("train", "--dataset", "folder", "--data", root, "--model", "tiny", "--res", "24x18", "--epochs", "1",
                           "--batch", "2", "--pretrained", "none", "--out", tmp_path / "run", "--quiet")
    assert code == 2 and err.count("\n") == 1 and "holds no labelled pixel" in err, err
    code, _, err = cli_run("eval", "--model", tiny_checkpoint, "--dataset", "folder", "--data", root, "--json", tmp_path / "e.json")
    assert code == 2 and "holds no labelled pixel" in err and not (tmp_path / "e.json").exists(), err


def test_json_written_by_edgeseg_is_strict_json(tmp_path):
    """A metric of a class with no pixels is NaN in Python: written as null, never as NaN."""
    from edgeseg.fileio import write_json_atomic

    write_json_atomic(tmp_path / "r.json", {"miou": float("nan"), "per_class": {"a": float("inf"), "b": 1.5}, "l": [float("-inf")]})
    assert json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict {c}")) == \
        {"miou": None, "per_class": {"a": None, "b": 1.5}, "l": [None]}


def test_two_files_of_one_name_stem_are_refused_naming_both(tmp_path):
    """s0.jpg and s0.png beside each other: which pairs with the mask was an accident of sorting (the
    other was dropped without a word)."""
    from conftest import make_folder_dataset

    root = make_folder_dataset(tmp_path / "dup", n_train=2, n_val=1)
    first = sorted((root / "train" / "images").iterdir())[0]
    (first.with_suffix(".jpg")).write_bytes(first.read_bytes())
    with pytest.raises(DataError, match=rf"{first.stem}.jpg and {first.stem}.png share the name stem"):
        build_dataset("folder", root, "train")
    camvid_layout(tmp_path / "camvid", n=2)
    (tmp_path / "camvid" / "train" / "f0.jpg").write_bytes((tmp_path / "camvid" / "train" / "f0.png").read_bytes())
    with pytest.raises(DataError, match="f0.jpg and f0.png share"):
        build_dataset("camvid", tmp_path / "camvid", "train")


def test_image_files_converting_would_spoil_are_refused_or_said(tmp_path, caplog):
    """A 32-bit float image (values often 0..1) would convert to black: refused naming the file.
    A file of several frames (a multi-page TIFF) is read by its first frame, and said."""
    import numpy as np
    from PIL import Image

    from edgeseg.data import base
    from edgeseg.errors import DataError

    Image.fromarray(np.random.default_rng(0).random((8, 10), dtype=np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(DataError, match="f.tif: a 32-bit floating-point image"):
        base.read_image(tmp_path / "f.tif")
    frames = [Image.fromarray(np.full((8, 10, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    base._MULTI_FRAME.clear()
    with caplog.at_level("WARNING"):
        got = base.read_image(tmp_path / "pages.tif")
    assert got.shape == (8, 10, 3) and int(got[0, 0, 0]) == 10
    assert "2 frames in one image file" in caplog.text
