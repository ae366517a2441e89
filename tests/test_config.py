"""Config: yaml + overrides merge into typed defaults; bad keys and types fail with helpful messages."""
import pytest

from isl.config import CONFIG_DIR, Config, ConfigError, dump_yaml, from_dict, load_config, parse_override, to_dict


def test_every_shipped_config_loads():
    for path in sorted(CONFIG_DIR.rglob("*.yaml")):
        if path.parent.name == "ablations":
            continue  # sweep files, not experiment files
        cfg = load_config(path)
        assert isinstance(cfg, Config), path


def test_bare_name_is_looked_up_in_configs_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config("cifar10.yaml").data.name == "cifar10"
    assert load_config("cifar10").model.arch == "resnet18"


def test_dotted_override_and_int_for_float():
    cfg = load_config("digits.yaml", ["isl.gan.alpha=2", "train.batch_size=64", "isl.mining.strategy=knn"])
    assert cfg.isl.gan.alpha == 2.0 and isinstance(cfg.isl.gan.alpha, float)
    assert cfg.train.batch_size == 64 and cfg.isl.mining.strategy == "knn"
    assert parse_override("a.b.c=[1, 2]") == {"a": {"b": {"c": [1, 2]}}}


def test_dotted_override_into_a_mapping_sets_one_key_a_whole_mapping_replaces_it():
    cfg = load_config("baselines/a_hard_pair.yaml", ["baseline.loss_kwargs.alpha=10"])
    assert cfg.baseline.loss_kwargs == {"alpha": 10, "beta": 20.0, "pos_limit": 0.8, "neg_limit": 1.1}
    cfg = load_config("baselines/a_hard_pair.yaml", ["baseline.loss_kwargs={alpha: 10}"])
    assert cfg.baseline.loss_kwargs == {"alpha": 10}
    cfg = load_config("baselines/a_hard_pair.yaml", ["baseline.loss_kwargs={}", "baseline.loss_kwargs.beta=5"])
    assert cfg.baseline.loss_kwargs == {"beta": 5}
    assert type(cfg.baseline.loss_kwargs) is dict  # plain, so it dumps to yaml and checkpoints like any mapping
    assert "beta: 5" in dump_yaml(cfg)


def test_swapping_the_data_set_of_a_full_config_names_the_config_to_run():
    with pytest.raises(ConfigError, match=r"data.name='svhn', but .*digits.yaml describes 'digits'.*--cfg svhn.yaml"):
        load_config("digits.yaml", ["data.name=svhn"])
    with pytest.raises(ConfigError, match="write a config for it"):
        load_config("digits.yaml", ["data.name=cifar100_20"])
    with pytest.raises(ConfigError, match="valid choices|one of"):
        load_config("digits.yaml", ["data.name=mnist"])  # not a data set: the list of valid names instead
    assert load_config("digits.yaml", ["data.name=digits"]).data.name == "digits"


def test_unknown_key_lists_valid_keys_and_closest_match():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["isl.gan.alpah=2"])
    assert "did you mean 'alpha'" in str(err.value) and "noise_dim" in str(err.value)


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("isl: {temprature: 0.2}\n")
    with pytest.raises(ConfigError, match="bad.yaml.*did you mean 'temperature'"):
        load_config(bad)


@pytest.mark.parametrize("override, fragment", [
    ("train.batch_size=abc", "must be of type int"),
    ("train.batch_size=1.5", "must be of type int"),
    ("train.amp=3", "must be of type str"),
    ("train.amp=true", "off | bf16 | fp16"),
    ("train.amp=fp32", "not one of auto, off, bf16, fp16"),
    ("isl=3", "is a section"),
    ("isl.mining.strategy=gann", "did you mean 'gan'"),
    ("isl.mining.radius=0", "radius"),
    ("isl.mining.radius=2.5", "radius"),
    ("isl.mining.threshold=1.5", "threshold"),
    ("isl.gan.alpha=-1", "alpha"),
    ("isl.temperature=0", "temperature"),
    ("isl.bank_momentum=1.5", "bank_momentum"),
    ("noequals", "section.key=value"),
])
def test_wrong_types_and_ranges_fail_clearly(override, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(None, [override])


def test_missing_config_file_lists_available():
    with pytest.raises(ConfigError, match="cifar10.yaml"):
        load_config("cifar11.yaml")


def test_machine_paths_from_environment_and_cli(monkeypatch):
    monkeypatch.setenv("ISL_DATA_ROOT", "/data/x")
    monkeypatch.setenv("ISL_OUTPUT_ROOT", "/out/y")
    cfg = load_config("digits.yaml")
    assert cfg.data.root == "/data/x" and cfg.output_root == "/out/y"
    cfg = load_config("digits.yaml", data_root="/cli/data", output_root="/cli/out")
    assert cfg.data.root == "/cli/data" and cfg.output_root == "/cli/out"


def test_round_trip_through_dict_and_yaml():
    import yaml
    cfg = load_config("stl10.yaml", ["isl.gan.alpha=0.5"])
    assert from_dict(to_dict(cfg)) == cfg
    assert from_dict(yaml.safe_load(dump_yaml(cfg))) == cfg


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"), (b"# nothing but a comment\n", "is empty"),
    (b"seed: 1\nseed: 2\n", "line 2: key 'seed' appears twice"),
    (b"isl:\n  gan: {alpha: 1.0}\n  gan: {alpha: 2.0}\n", "key 'gan' appears twice"),
    (b"data:\n\tname: digits\n", "not tabs"), (b"data: {name: digits\n", "not valid yaml at line 2"),
    (b"\xff\xfe\x00binary", "not a text file"), (b"- a\n- b\n", "must hold a mapping"),
])
def test_bad_yaml_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_exponent_without_dot_is_a_float():
    cfg = load_config(None, ["optim.lr=3e-2", "isl.gan.lr=1E-3"])
    assert cfg.optim.lr == 0.03 and cfg.isl.gan.lr == 0.001
    with pytest.raises(ConfigError, match="optim.lr must be of type float"):
        load_config(None, ["optim.lr=fast"])


def test_repeated_set_flags_accumulate():
    import argparse

    from isl.cli import add_run_arguments

    parser = argparse.ArgumentParser()
    add_run_arguments(parser, default_cfg="digits.yaml")
    args = parser.parse_args(["--set", "seed=1", "--set", "isl.lam=0.2", "train.batch_size=64"])
    assert args.overrides == ["seed=1", "isl.lam=0.2", "train.batch_size=64"]


def test_baseline_configs_follow_their_data_set():
    """Each loss yaml sits on a data-set base file; --data swaps the base (name, model, kNN k, experiment), and a
    bare data.name override that would keep digits' model and k is refused."""
    digits = load_config("baselines/multi_similarity.yaml")
    assert (digits.experiment, digits.data.name, digits.model.arch, digits.eval.knn_k) == (
        "digits_baseline_multi_similarity", "digits", "convnet", 20)
    for name, arch in (("cifar10", "resnet18"), ("cifar100", "resnet18"), ("stl10", "resnet18_stl"),
                       ("svhn", "resnet18"), ("fashion_mnist", "convnet")):
        cfg = load_config("baselines/multi_similarity.yaml", base=f"baselines/datasets/{name}.yaml")
        assert (cfg.experiment, cfg.data.name, cfg.model.arch, cfg.eval.knn_k) == (
            f"{name}_baseline_multi_similarity", name, arch, 200)
        assert cfg.baseline.loss_kwargs == digits.baseline.loss_kwargs  # the loss part is the loss yaml's
    assert load_config("baselines/triplet.yaml", ["baseline.loss=circle"]).experiment == "digits_baseline_circle"
    with pytest.raises(ConfigError, match="--data cifar10"):
        load_config("baselines/multi_similarity.yaml", ["data.name=cifar10", "model.arch=resnet18"])
    with pytest.raises(ConfigError, match="cannot fill in"):
        load_config("digits.yaml", ["experiment='{data.nme}_x'"])
