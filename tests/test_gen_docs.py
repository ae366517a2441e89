"""docs/config.md and docs/losses.md are generated (tools/gen_docs.py): the committed pages equal what the
dataclasses and the loss registry say now."""
import dataclasses

from baselines.registry import LOSSES
from isl.config import Config
from isl.tools import gen_docs


def test_committed_pages_are_up_to_date():
    for path, text in gen_docs.pages().items():
        assert path.read_text() == text, f"{path} is stale: run python tools/gen_docs.py"


def test_config_reference_has_every_key_with_its_comment():
    rows = {key: (typ, default, comment) for key, typ, default, comment in gen_docs.config_rows(Config())}
    n_leaves = sum(1 for f in dataclasses.fields(Config()) if not dataclasses.is_dataclass(getattr(Config(), f.name)))
    assert len(rows) > 70 and n_leaves == 3 and "isl.gan.alpha" in rows
    assert rows["isl.mining.radius"][1] == "0.632" and "adaptive radius at D = 0.5" in rows["isl.mining.radius"][2]
    assert rows["optim.step_milestones"][:2] == ("list[float]", "[0.6, 0.8]")
    assert len(gen_docs.loss_rows()) == len(LOSSES)


def test_tools_doc_shows_the_shipped_sweep_file():
    import re

    import yaml

    from isl.config import CONFIG_DIR
    text = (gen_docs.ROOT / "docs" / "tools.md").read_text()
    block = re.search(r"\*\*Sweep file\*\*.*?```yaml\n(.*?)```", text, re.S).group(1)
    shown = yaml.safe_load(block)
    shipped = yaml.safe_load((CONFIG_DIR / "ablations" / "alpha_r_h.yaml").read_text())
    assert shown == shipped
