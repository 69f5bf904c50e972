"""Spec scopes are typed (tenant, profile) and their text form is checked when read back; spec
lineage is an enum, and versions stored with the old "meta-critic:<mode>" source still read."""

from __future__ import annotations

import pytest

from specguard.errors import ConfigError
from specguard.policy import SpecUpdateMode
from specguard.spec import Provenance, Scope, SpecSource, scope_chain, scope_for


def test_scope_text_round_trips_and_inherits_narrowest_first():
    s = Scope(tenant="a", profile="teen")
    assert str(s) == scope_for(tenant="a", profile="teen") == "tenant:a/profile:teen"
    assert Scope.parse(str(s)) == s
    assert scope_chain("tenant:a/profile:teen") == ["tenant:a/profile:teen", "tenant:a", "global"]
    assert scope_chain("profile:teen") == ["profile:teen", "global"]
    assert scope_chain("global") == ["global"]


@pytest.mark.parametrize("bad", ["tenant:", "tenant:a/tenant:b", "profile:p/tenant:a", "team:x",
                                 "tenant:a b", "tenant:a/profile:p/extra:1"])
def test_malformed_scopes_are_config_errors(bad):
    with pytest.raises(ConfigError):
        Scope.parse(bad)


def test_lineage_is_an_enum_and_legacy_sources_still_read():
    legacy = Provenance.model_validate({"source": "meta-critic:metasc-10"})
    assert legacy.source is SpecSource.META_CRITIC and legacy.mode is SpecUpdateMode.METASC_10
    assert legacy.learned and str(legacy) == "meta-critic:metasc-10"
    assert not Provenance(source=SpecSource.ADMIN).learned
    with pytest.raises(ValueError):
        Provenance.model_validate({"source": "somebody"})
