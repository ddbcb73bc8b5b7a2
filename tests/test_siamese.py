"""The seed's Siamese cartoon-face model in the kit: network, loss, the original's whole-model pickle through the
safe path, pair sampling, training on synthetic identities, and the label-free identity metric."""

from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pytest
import torch

from ssuper_lib.identity import label_free_identity, label_free_identity_from_embeddings, spearman_rho, validate_against_identity
from ssuper_lib.models.siamese import (OriginalPickleError, SiameseNetwork, contrastive_loss, embed_faces,
                                       load_original_siamese, load_siamese)
from ssuper_lib.identity.siamese_training import (IdentityFaces, cached_siamese, main, pair_accuracy, sample_pairs, split_by_series,
                                synthetic_identity_faces, train_siamese)




def test_network_shapes_and_key_names():
    net = SiameseNetwork(64, "resnet18")
    assert net(torch.rand(2, 3, 64, 64)).shape == (2, 5)
    keys = net.state_dict()
    assert keys["fc1.net.0.weight"].shape == (500, 2048)  # 512 x 2 x 2 features at 64 px, as the original
    assert keys["fc1.net.4.weight"].shape == (5, 500)
    assert "cnn1.0.weight" in keys and "cnn1.4.0.conv1.weight" in keys and "cnn1.7.1.bn2.running_var" in keys
    basic = SiameseNetwork(16, "basic")
    assert basic(torch.rand(3, 3, 16, 16)).shape == (3, 5)
    assert basic.state_dict()["fc1.net.0.weight"].shape == (500, 8 * 16 * 16)
    assert "cnn1.1.weight" in basic.state_dict() and "cnn1.11.running_mean" in basic.state_dict()


def test_contrastive_loss_values():
    e1 = torch.zeros(2, 5)
    e2 = torch.zeros(2, 5)
    e2[:, 0] = 0.3  # distance 0.3 for both pairs
    same_then_diff = torch.tensor([0, 1])
    # same: d^2 = 0.09; different: (1 - 0.3)^2 = 0.49
    assert contrastive_loss(e1, e2, same_then_diff).item() == pytest.approx((0.09 + 0.49) / 2, abs=1e-6)
    e2[1, 0] = 1.5  # beyond the margin: no loss for a different pair
    assert contrastive_loss(e1, e2, same_then_diff).item() == pytest.approx(0.09 / 2, abs=1e-6)


# --------------------------------------------------------------------------------------------------
# The original's whole-model pickle
# --------------------------------------------------------------------------------------------------

_FAKE_MLP = '''
import torch.nn as nn

class MLP(nn.Module):
    def __init__(self, input_size, output_size, hidden_size=64, num_layers=2, activate_function_type=nn.ReLU):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.activation_func_type = activate_function_type
        self.num_layers = num_layers
        self.net = nn.ModuleList([])
        for _ in range(num_layers):
            self.net.append(nn.Linear(input_size, hidden_size))
            input_size = hidden_size
            self.net.append(activate_function_type())
        self.net.append(nn.Linear(hidden_size, output_size))
'''

_FAKE_SIAMESE = '''
import enum
import torch.nn as nn
from torchvision.models import resnet18
from networks.mlp import MLP

class SiameseBackbone(enum.Enum):
    BASIC = 1
    RESNET_18 = 2

class SiameseNetwork(nn.Module):
    def __init__(self, image_dim, backbone=SiameseBackbone.RESNET_18):
        super().__init__()
        self.backbone = backbone
        self.image_dim = image_dim
        if backbone is SiameseBackbone.BASIC:
            layers = []
            for cin, cout in ((3, 4), (4, 8), (8, 8)):
                layers += [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, kernel_size=3), nn.ReLU(inplace=True),
                           nn.BatchNorm2d(cout)]
            self.cnn1 = nn.Sequential(*layers)
            fc_input_size = 8 * image_dim * image_dim
        else:
            self.cnn1 = nn.Sequential(*(list(resnet18().children())[0:8]))
            fc_input_size = 2048
        self.fc1 = MLP(input_size=fc_input_size, output_size=5, hidden_size=500, num_layers=2)

    def forward_once(self, x):
        out = self.cnn1(x)
        out = out.view(out.size()[0], -1)
        for layer in self.fc1.net:
            out = layer(out)
        return out
'''


def _write_original_pickle(tmp_path, module_path: str, backbone: str, image_dim: int):
    """A ``torch.save(model)`` file in the original's exact form: classes named ``<module_path>.SiameseNetwork``
    and ``networks.mlp.MLP`` (fake stand-ins written here); returns (file, reference embeddings, input)."""
    src = tmp_path / "orig_src"
    pkg = src / "networks"
    (pkg / "siamese").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "siamese" / "__init__.py").write_text("")
    (pkg / "mlp.py").write_text(textwrap.dedent(_FAKE_MLP))
    (src / (module_path.replace(".", "/") + ".py")).write_text(textwrap.dedent(_FAKE_SIAMESE))
    sys.path.insert(0, str(src))
    try:
        mod = importlib.import_module(module_path)
        torch.manual_seed(1)
        model = mod.SiameseNetwork(image_dim, getattr(mod.SiameseBackbone, backbone))
        # non-trivial BN statistics, so that buffers must be carried over too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
        model.eval()
        x = torch.rand(3, 3, image_dim, image_dim)
        with torch.no_grad():
            ref = model.forward_once(x)
        path = tmp_path / "siamese_original.pth"
        torch.save(model, path)  # the whole model, as the original's save_best_loss_model
    finally:
        sys.path.remove(str(src))
        for name in [n for n in sys.modules if n == "networks" or n.startswith("networks.")]:
            del sys.modules[name]
    return path, ref, x


@pytest.mark.parametrize("module_path, backbone, image_dim", [
    ("networks.siamese.siamese_network", "RESNET_18", 64),  # HEAD layout
    ("networks.siamese_network", "BASIC", 12),  # the earlier module path, BASIC trunk
])
def test_original_whole_model_pickle_loads_through_the_safe_path(tmp_path, module_path, backbone, image_dim, one_thread):
    path, ref, x = _write_original_pickle(tmp_path, module_path, backbone, image_dim)
    assert "networks" not in sys.modules  # the original's classes are not importable while loading
    model = load_original_siamese(path)
    assert model.backbone_name == ("resnet18" if backbone == "RESNET_18" else "basic") and model.image_dim == image_dim
    with torch.no_grad():
        assert torch.allclose(model(x), ref, atol=1e-6)
    # the documented conversion step gives a weights_only checkpoint with the same network
    out = tmp_path / "converted.pt"
    assert main(["convert", str(path), str(out)]) == 0
    with torch.no_grad():
        assert torch.allclose(load_siamese(out)(x), ref, atol=1e-6)
    with pytest.raises(ValueError, match="load_original_siamese"):
        load_siamese(path)  # a whole-model pickle is not a kit checkpoint


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


def test_pickle_with_other_globals_is_refused_without_running_them(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": _Evil(marker)}, path)
    with pytest.raises(OriginalPickleError, match="system"):
        load_original_siamese(path)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------
# Pairs and training
# --------------------------------------------------------------------------------------------------


def test_pairs_are_labelled_by_identity():
    ids = np.array(["a", "a", "b", "b", "b", "c"])
    i, j, label = sample_pairs(ids, 400, seed=3)
    assert np.array_equal(label == 0, ids[i] == ids[j])
    assert 0.4 < (label == 0).mean() < 0.6
    i2, j2, l2 = sample_pairs(ids, 400, seed=3)
    assert np.array_equal(i, i2) and np.array_equal(j, j2) and np.array_equal(label, l2)


def test_training_on_synthetic_identities_writes_a_run(tmp_path, tiny_synthetic, one_thread):
    faces = synthetic_identity_faces(tiny_synthetic, size=16)
    train, test = split_by_series(faces, test_fraction=0.25)
    assert set(train.series).isdisjoint(test.series) and len(test) > 0
    # the BASIC trunk at 16 px keeps this under a second; the ResNet-18 path is the same loop
    run = train_siamese(train, test, steps=24, batch_size=16, image_dim=16, backbone="basic", out_dir=tmp_path / "runs",
                        eval_every=12, val_pairs=200, progress=False)
    d = run.run_dir
    assert (d / "config.json").is_file() and (d / "metrics.jsonl").is_file()
    losses = [r["loss"] for r in run.history if r["kind"] == "train"]
    assert len(losses) == 24 and np.mean(losses[-6:]) < np.mean(losses[:6])
    assert {"accuracy", "auc", "best_accuracy"} <= set(run.val) and 0 <= run.val["accuracy"] <= 1
    again = load_siamese(d / "checkpoints" / "siamese.pt")
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(embed_faces(again, x), embed_faces(run.model, x), atol=1e-6)
    res = pair_accuracy(run.model, test, n_pairs=50)
    assert res["distances"].shape == (50,)


# --------------------------------------------------------------------------------------------------
# Label-free identity metric
# --------------------------------------------------------------------------------------------------


def _toy(n_series: int = 4, per_series: int = 3, dim: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    true = rng.normal(size=(n_series * per_series, dim)) * 3
    series = np.repeat([str(s) for s in range(n_series)], per_series)
    return true, series


def test_perfect_generator_scores_one_and_random_scores_low():
    true, series = _toy()
    perfect = label_free_identity_from_embeddings(true, true, series, true, series, k=5)["summary"]
    assert perfect["lf_top1"] == 1.0 and perfect["lf_mrr"] == 1.0 and perfect["lf_verify"] == 1.0
    rng = np.random.default_rng(1)
    rand = label_free_identity_from_embeddings(rng.normal(size=true.shape) * 3, true, series, true, series, k=5)["summary"]
    assert rand["lf_top1"] < 0.6 and rand["lf_mrr"] < perfect["lf_mrr"]
    assert perfect["lf_n"] == len(true) and perfect["lf_chance_top1"] == pytest.approx(1 / 6)


def test_same_series_faces_are_never_candidates():
    true, series = _toy()
    gen = true.copy()
    gen[0] = true[1]  # sample 0 generates exactly another face of its own series (maybe the same character)
    out = label_free_identity_from_embeddings(gen, true, series, true, series, k=20)
    per = out["per_sample"]
    # true[1] is not a candidate for sample 0 (same series), so only other series' faces compete
    dist_other = np.linalg.norm(true[series != series[0]] - gen[0], axis=1)
    expected_rank = 1 + int(np.sum(dist_other <= np.linalg.norm(gen[0] - true[0])))
    assert per.loc[0, "rank"] == expected_rank and per.loc[0, "n_candidates"] == int((series != series[0]).sum())


def test_candidates_are_the_same_for_every_model_and_ties_count_against():
    true, series = _toy()
    a = label_free_identity_from_embeddings(true + 0.1, true, series, true, series, k=3, seed=5)["per_sample"]
    b = label_free_identity_from_embeddings(true + 0.1, true, series, true, series, k=3, seed=5)["per_sample"]
    assert a.equals(b)
    # a generator whose output is a candidate face exactly at the true face's distance: a tie is not a win
    cand = np.array([[0.0, 0, 0, 0, 1.0]])
    gen, tru = np.zeros((1, 5)), np.array([[0.0, 0, 0, 0, -1.0]])
    out = label_free_identity_from_embeddings(gen, tru, ["x"], cand, ["y"], k=1)["per_sample"]
    assert out.loc[0, "rank"] == 2 and out.loc[0, "top1"] == 0 and out.loc[0, "verified"] == 0


def test_sample_without_other_series_is_skipped():
    true, series = _toy(n_series=1)
    out = label_free_identity_from_embeddings(true, true, series, true, series, k=3)
    assert out["summary"]["lf_n"] == 0 and out["summary"]["lf_skipped"] == len(true)
    assert np.isnan(out["summary"]["lf_top1"]) and out["per_sample"]["top1"].isna().all()


def test_metric_on_faces_with_a_siamese_embedder(one_thread):
    torch.manual_seed(0)
    net = SiameseNetwork(16, "basic").eval()
    faces = torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8)
    series = ["a", "a", "b", "b", "c", "c"]
    out = label_free_identity(faces, faces, series, faces, series, net, k=4)
    assert out["summary"]["lf_top1"] == 1.0 and len(out["per_sample"]) == 6
    floats = faces.float() / 127.5 - 1  # the kit's [-1, 1] convention embeds the same as uint8
    e1, e2 = embed_faces(net, faces), embed_faces(net, floats)
    assert torch.allclose(e1, e2, atol=1e-5)


def test_spearman_and_validation_text():
    assert spearman_rho([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert spearman_rho([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman_rho([1, 2, 3, np.nan, 5], [1, 3, 2, 7, 4]) == pytest.approx(0.8)
    assert np.isnan(spearman_rho([1, 2], [1, 2])) and np.isnan(spearman_rho([1, 1, 1], [1, 2, 3]))
    rows = [{"lf_top1": a, "id_acc": b} for a, b in [(0.1, 0.2), (0.3, 0.1), (0.2, 0.4), (0.4, 0.3)]]
    v = validate_against_identity(rows)
    assert v["n"] == 4 and v["rho"] == pytest.approx(0.0) and v["weak"] and "WEAK" in v["text"]
    strong = validate_against_identity([{"lf_top1": x, "id_acc": 2 * x} for x in (0.1, 0.2, 0.3)])
    assert strong["rho"] == pytest.approx(1.0) and not strong["weak"] and "WEAK" not in strong["text"]


def test_cached_siamese_trains_once_and_reloads(tmp_path, one_thread):
    rng = np.random.default_rng(0)
    faces = IdentityFaces(torch.from_numpy(rng.integers(0, 256, (12, 3, 16, 16), dtype=np.uint8)),
                          np.repeat(["a", "b", "c"], 4), np.repeat(["0", "1", "2"], 4))
    kw = dict(steps=3, batch_size=4, image_dim=16, backbone="basic")
    m1 = cached_siamese(faces, tmp_path, **kw)
    files = list(tmp_path.glob("siamese_*.pt"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    m2 = cached_siamese(faces, tmp_path, **kw)
    assert files[0].stat().st_mtime_ns == stamp  # reloaded, not retrained
    x = faces.faces[:4]
    assert torch.allclose(embed_faces(m1, x), embed_faces(m2, x), atol=1e-6)
    cached_siamese(faces, tmp_path, **{**kw, "steps": 4})
    assert len(list(tmp_path.glob("siamese_*.pt"))) == 2  # other settings, other model


def test_results_table_embeds_the_shared_true_faces_once(tmp_path):
    """add_label_free_identity: rows of one table share their true faces; they are embedded once, and every
    row's metric equals label_free_identity computed on its own."""
    from ssuper_lib.evaluate import add_label_free_identity

    g = torch.Generator().manual_seed(0)
    true = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8, generator=g)
    series = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    seen = []

    def embedder(x):  # any callable faces -> (B, D); records what it embeds
        seen.append(len(x))
        return x.float().flatten(1)[:, :16]

    rows = []
    for k in range(3):
        gen = torch.randint(0, 256, true.shape, dtype=torch.uint8, generator=g) if k else true.clone()
        path = tmp_path / f"faces{k}.pt"
        torch.save({"gen": gen, "true": true, "series": series}, path)
        rows.append({"faces_path": str(path), "kind": "model", "id_acc": k / 3})
    add_label_free_identity(rows, embedder, k=4)
    assert sum(seen) == len(true) * (1 + len(rows))  # the true faces once, each row's generated faces once
    for r in rows:
        f = torch.load(r["faces_path"], weights_only=True)
        ref = label_free_identity(f["gen"], f["true"], series, f["true"], series, embedder, k=4)["summary"]
        assert {k: r[k] for k in ref} == ref
    assert rows[0]["lf_top1"] == 1.0
