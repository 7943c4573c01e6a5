import pytest

from lensbox import SiteError
from lensbox.core import Site, SiteKind, SitesSpec
from lensbox.core._sites import default_sites, parse_sites, resolve_site


def test_resolve_forms():
    assert resolve_site("embed", 30) == Site.embed()
    assert resolve_site("final", 30) == Site.resid_post(29)
    assert resolve_site(3, 30) == Site.resid_post(3)
    assert resolve_site(-1, 30) == Site.resid_post(29)
    assert resolve_site("resid_mid.4", 30) == Site.resid_mid(4)
    assert resolve_site("blocks.7.hook_resid_pre", 30) == Site.resid_pre(7)
    assert resolve_site("pre 2", 30) == Site.resid_pre(2)
    # The stream entering block 0 is the embedding stream: one site, one name.
    assert resolve_site("resid_pre.0", 30) == Site.embed()


def test_unknown_site_lists_valid_choices():
    with pytest.raises(SiteError) as info:
        resolve_site("resid_pots.3", 30)
    msg = str(info.value)
    assert "resid_pots.3" in msg and "resid_post.i" in msg and "0..29" in msg


def test_layer_out_of_range():
    with pytest.raises(SiteError, match="Layer 30 does not exist"):
        resolve_site(30, 30)
    with pytest.raises(SiteError, match="resid_post.31 is outside this model"):
        resolve_site(Site.resid_post(31), 30)


def test_site_construction_errors():
    with pytest.raises(SiteError, match="needs an integer layer"):
        Site(SiteKind.RESID_POST)
    with pytest.raises(SiteError, match="no layer index"):
        Site(SiteKind.EMBED, 3)


def test_depth_order_and_defaults():
    sites = default_sites(4, include_mid=True)
    assert [s.name for s in sites] == [
        "embed", "resid_mid.0", "resid_post.0", "resid_mid.1", "resid_post.1",
        "resid_mid.2", "resid_post.2", "resid_mid.3", "resid_post.3",
    ]
    assert sorted(reversed(sites)) == sites
    assert len(default_sites(30)) == 31


def test_parse_ranges_and_dedup():
    got = parse_sites("embed, 0-2, final, 2, resid_mid.1", 5)
    assert [s.name for s in got] == ["embed", "resid_post.0", "resid_mid.1", "resid_post.1", "resid_post.2", "resid_post.4"]
    with pytest.raises(SiteError, match="No sites"):
        parse_sites([], 5)


@pytest.mark.parametrize(
    "spec, names",
    [
        (None, ["embed", "resid_post.0", "resid_post.1", "resid_post.2"]),
        ("all", ["embed", "resid_post.0", "resid_post.1", "resid_post.2"]),
        (1, ["resid_post.1"]),
        ("final", ["resid_post.2"]),
        (Site.resid_mid(1), ["resid_mid.1"]),
        ("embed,1-2", ["embed", "resid_post.1", "resid_post.2"]),
        ([0, "resid_pre.2", Site.embed()], ["embed", "resid_post.0", "resid_pre.2"]),
        ((s for s in ["final", 0]), ["resid_post.0", "resid_post.2"]),
    ],
)
def test_every_sites_spec_form(spec: SitesSpec, names):
    assert [s.name for s in parse_sites(spec, 3)] == names
