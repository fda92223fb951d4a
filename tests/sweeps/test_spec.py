from pathlib import Path

import pytest
import yaml

from sweeps import spec as spec_module
from sweeps.spec import SpecError, load_spec, parse_spec, possible_values

SPEC_DIR = Path(__file__).resolve().parents[2] / "sweeps"


@pytest.mark.parametrize("path", sorted(SPEC_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_load_spec_shipped_specs_are_valid(path):
    spec = load_spec(path)
    assert spec.name
    assert spec.resolved()["fixed"].keys().isdisjoint(spec.search)


def test_load_spec_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "quick-look.yaml"
    path.write_text("budget: {trials: 3}\n")
    assert load_spec(path).name == "quick-look"


def test_load_spec_missing_file_names_it(tmp_path):
    with pytest.raises(SpecError, match=r"nope\.yaml: no such sweep spec"):
        load_spec(tmp_path / "nope.yaml")


def test_load_spec_invalid_yaml_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("search: [unclosed\n")
    with pytest.raises(SpecError, match=r"broken\.yaml: not a readable YAML file"):
        load_spec(path)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"epochs": 3}, r"unknown key 'epochs'; accepted keys here: name, .*training"),
        ({"cv": {"fold": 3}}, r"unknown key 'cv.fold'; accepted keys here: folds, metric"),
        ({"cv": {"folds": 1}}, r"key 'cv.folds': .*greater than or equal to 2, found 1"),
        ({"cv": {"metric": "accuracy"}}, r"key 'cv.metric': .*'balanced_accuracy'.*'accuracy'"),
        ({"collapse": {"max_majority_share": 0.4}}, r"collapse.max_majority_share"),
        ({"search": {"widht": [16]}}, r"unknown parameter 'search.widht'; known .*width"),
        ({"search": {"embedding": ["linear", "bag"]}}, r"'search.embedding': found 'bag'"),
        ({"search": {"embedding": {"low": 1, "high": 2}}}, r"takes a list of choices"),
        ({"search": {"depth": {"low": 1.5, "high": 3}}}, r"depth takes integers"),
        ({"search": {"depth": {"low": 4, "high": 2}}}, r"low 4.0 is above high 2.0"),
        ({"search": {"learning_rate": {"low": 0, "high": 1e-2, "log": True}}}, r"\(0, 1\]"),
        ({"search": {"width": {"low": 8, "hgih": 64}}}, r"search.width"),
        ({"search": {"scaling": []}}, r"empty list of choices"),
        ({"fixed": {"dropout_rate": 1.5}}, r"'fixed.dropout_rate': found 1.5"),
        ({"fixed": {"norm_first": "yes"}}, r"'fixed.norm_first': found 'yes'; accepted: true"),
        ({"search": {"width": [16]}, "fixed": {"width": 16}}, r"both searched and fixed"),
        ({"search": {"width": [16, 24]}, "fixed": {"num_heads": 16}}, r"24 is not divisible"),
        (
            {"search": {"patch_length": {"low": 4, "high": 8}}, "fixed": {"embedding": "token"}},
            r"only applies when embedding is 'patch', but embedding is fixed to 'token'",
        ),
        (
            {"search": {"embedding": ["token"], "patch_length": {"low": 4, "high": 8}}},
            r"'search.embedding' never chooses",
        ),
        (
            {
                "search": {"embedding": ["patch"], "patch_stride": [4, 16]},
                "fixed": {"patch_length": 8},
            },
            r"patch_stride can be 16 but patch_length can be 8",
        ),
        (
            {
                "search": {"embedding": ["conv"], "conv_kernel_size": {"low": 3, "high": 9}},
                "fixed": {"conv_stride": 4},
            },
            r"conv_stride can be 4 but conv_kernel_size can be 3",
        ),
        ({"model": "user", "search": {"width": [16, 32]}}, r"'search.width' does not apply"),
        ({"model": "user", "fixed": {"embedding": "linear"}}, r"does not apply to model: user"),
        ({"model": "bert"}, r"key 'model': .*'transformer' or 'user'"),
        (
            {"sampler": {"name": "grid"}, "search": {"depth": {"low": 1, "high": 2}}},
            r"'search.depth' is a range, but sampler grid needs a list",
        ),
        ({"model": "user", "user_model": {"embed_dim": 1}}, r"user_model.embed_dim"),
    ],
)
def test_parse_spec_bad_value_names_key(raw, message):
    with pytest.raises(SpecError, match=message) as caught:
        parse_spec({"name": "t", **raw}, source="my.yaml")
    assert str(caught.value).startswith("my.yaml: ")
    assert "\n" not in str(caught.value)


def test_spec_resolved_fills_every_parameter():
    spec = parse_spec({"name": "t", "search": {"embedding": ["linear", "patch"]}})
    resolved = spec.resolved()
    assert resolved["training"]["max_epochs"] >= 1
    assert set(resolved["fixed"]) | set(resolved["search"]) >= {
        "embedding",
        "scaling",
        "learning_rate",
        "depth",
        "pooling",
        "width",
        "num_heads",
        "dropout_rate",
        "batch_size",
        "patch_length",
    }
    # The resolved spec is saved with the study, so it must survive a YAML round trip.
    assert parse_spec(yaml.safe_load(yaml.safe_dump(resolved))).resolved() == resolved


def test_spec_fixed_parameters_drop_what_does_not_apply():
    spec = parse_spec({"name": "t", "fixed": {"embedding": "linear"}})
    assert "patch_length" not in spec.fixed_parameters()
    assert parse_spec({"name": "t", "fixed": {"embedding": "patch"}}).fixed_parameters()[
        "patch_length"
    ]


def test_spec_user_model_takes_only_training_parameters():
    spec = parse_spec(
        {"name": "t", "model": "user", "fixed": {"scaling": "none", "batch_size": 10}}
    )
    assert spec.fixed_parameters() == {"scaling": "none", "learning_rate": 1e-3, "batch_size": 10}
    assert spec.training.early_stopping_patience == 5
    assert (
        parse_spec(
            {"name": "t", "training": {"early_stopping_patience": None}}
        ).training.early_stopping_patience
        is None
    )


def test_spec_fixed_parameters_leave_out_choices_never_made():
    spec = parse_spec({"name": "t", "search": {"embedding": ["linear", "periodic"]}})
    fixed = spec.fixed_parameters()
    assert "periodic_sigma" in fixed
    assert not {"patch_length", "ple_bins", "conv_stride"} & set(fixed)


def test_possible_values_enumerates_integer_ranges():
    spec = parse_spec({"name": "t", "search": {"depth": {"low": 1, "high": 3}}})
    assert possible_values(spec, "depth") == [1, 2, 3]
    assert possible_values(spec, "width") == [spec.fixed_parameters()["width"]]


def test_spec_names_match_the_packages():
    import data
    import models

    assert spec_module.SCALINGS == data.SCALINGS
    assert spec_module.EMBEDDINGS == models.EMBEDDINGS
    assert spec_module.POOLINGS == models.POOLINGS
