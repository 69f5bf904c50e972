"""The Goodtriever combination against a hand-computed example, and batch independence."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from specguard.decoding import Neighbours, goodtriever_logprobs, knn_logprobs, top_p_mask


def _nb(d, t):
    return Neighbours(torch.as_tensor(d, dtype=torch.float32), torch.as_tensor(t, dtype=torch.long))


def test_hand_computed_example():
    # base distribution [0.5, 0.3, 0.15, 0.05]: the 0.9 nucleus keeps tokens 0, 1, 2
    # (mass before token 2 is 0.8 < 0.9; before token 3 it is 0.95 >= 0.9)
    base = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    # non-toxic: distances 1, 2, 3 (T = 1) pointing at tokens 0, 0, 2
    nontoxic = _nb([[1.0, 2.0, 3.0]], [[0, 0, 2]])
    # toxic: distances 0, ln 2 pointing at tokens 1, 2 -> weights 2/3, 1/3
    toxic = _nb([[0.0, math.log(2.0)]], [[1, 2]])
    out = goodtriever_logprobs(base, toxic=toxic, nontoxic=nontoxic, alpha=2.0, temperature=1.0,
                               top_p=0.9)

    z = math.exp(-1) + math.exp(-2) + math.exp(-3)
    lp_plus = {0: math.log((math.exp(-1) + math.exp(-2)) / z), 2: math.log(math.exp(-3) / z)}
    plus_floor = lp_plus[2]  # the smallest retrieved log-prob of the row
    lp_minus = {1: math.log(2 / 3), 2: math.log(1 / 3)}
    minus_floor = lp_minus[2]
    raw = [
        math.log(0.5) + 2 * (lp_plus[0] - minus_floor),
        math.log(0.3) + 2 * (plus_floor - lp_minus[1]),
        math.log(0.15) + 2 * (lp_plus[2] - lp_minus[2]),
    ]
    norm = math.log(sum(math.exp(r) for r in raw))
    expected = [r - norm for r in raw]
    assert out.shape == (1, 4)
    for i in range(3):
        assert out[0, i].item() == pytest.approx(expected[i], abs=1e-5)
    assert out[0, 3].item() == float("-inf")  # outside the base nucleus
    assert torch.exp(out).sum().item() == pytest.approx(1.0, abs=1e-5)
    # the toxic store's favourite (token 1) lost probability, the non-toxic one's gained
    assert math.exp(expected[1]) < 0.3 / 0.95 < 0.5 / 0.95 < math.exp(expected[0])


def test_alpha_zero_is_the_filtered_base():
    base = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    out = goodtriever_logprobs(base, toxic=_nb([[0.0]], [[0]]), alpha=0.0, top_p=0.9)
    expected = torch.log(torch.tensor([0.5, 0.3, 0.15]) / 0.95)
    assert torch.allclose(out[0, :3], expected, atol=1e-6)
    assert out[0, 3] == float("-inf")


def test_knn_floor_is_per_row_and_missing_neighbours_are_ignored():
    nb = _nb([[0.0, 0.0, 5.0], [0.0, 1.0, 2.0]], [[3, 3, -1], [0, 1, 2]])
    lp = knn_logprobs(nb, vocab_size=5, temperature=1.0)
    # row 0 retrieved only token 3 (prob 1): its floor is log 1 = 0
    assert torch.allclose(lp[0], torch.zeros(5))
    w = torch.softmax(torch.tensor([0.0, -1.0, -2.0]), 0)
    assert lp[1, 0].item() == pytest.approx(math.log(w[0].item()), abs=1e-6)
    assert lp[1, 3].item() == pytest.approx(math.log(w[2].item()), abs=1e-6)  # row 1's floor
    assert lp[1, 4].item() == pytest.approx(math.log(w[2].item()), abs=1e-6)


def test_top_p_mask_keeps_the_argmax():
    lp = torch.log_softmax(torch.tensor([[10.0, 0.0, 0.0]]), -1)
    assert top_p_mask(lp, 0.5).tolist() == [[True, False, False]]
    assert top_p_mask(lp, 1.0).all()


def test_rows_are_independent_of_their_batch():
    g = torch.Generator().manual_seed(0)
    B, V, k = 6, 50, 16
    base = torch.randn(B, V, generator=g) * 3
    # rows retrieve very different token sets, so a batch-wide floor would couple them
    tox = _nb(torch.rand(B, k, generator=g) * 50, torch.randint(0, V, (B, k), generator=g))
    tox.tokens[0] = 7  # row 0: a single retrieved token
    non = _nb(torch.rand(B, k, generator=g) * 50, torch.randint(0, V, (B, k), generator=g))
    non.tokens[3, : k // 2] = -1  # row 3: half its neighbours missing
    kw = dict(alpha=2.0, temperature=10.0, top_p=0.9)
    batched = goodtriever_logprobs(base, toxic=tox, nontoxic=non, **kw)
    for i in range(B):
        alone = goodtriever_logprobs(
            base[i : i + 1],
            toxic=Neighbours(tox.distances[i : i + 1], tox.tokens[i : i + 1]),
            nontoxic=Neighbours(non.distances[i : i + 1], non.tokens[i : i + 1]),
            **kw,
        )
        assert torch.equal(alone[0], batched[i]), f"row {i} depends on its batch"
    # and reordering the batch permutes the output rows exactly
    perm = torch.tensor([5, 2, 0, 4, 1, 3])
    shuffled = goodtriever_logprobs(
        base[perm],
        toxic=Neighbours(tox.distances[perm], tox.tokens[perm]),
        nontoxic=Neighbours(non.distances[perm], non.tokens[perm]),
        **kw,
    )
    assert torch.equal(shuffled, batched[perm])


def test_gate_keeps_rows_where_the_stores_agree_and_shifts_the_others():
    from specguard.decoding import goodtriever_step

    base = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.5, 0.3, 0.15, 0.05]]))
    # row 0: both stores retrieve the same tokens with the same distances (no disagreement);
    # row 1: the toxic store's nearest neighbour points at token 1, the non-toxic one's at
    # token 0 (the second neighbours agree on token 2)
    toxic = _nb([[1.0, 2.0], [1.0, 2.0]], [[0, 2], [1, 2]])
    nontoxic = _nb([[1.0, 2.0], [1.0, 2.0]], [[0, 2], [0, 2]])
    plain = goodtriever_logprobs(base, alpha=0.0, top_p=0.9)
    ungated, applied0 = goodtriever_step(base, toxic=toxic, nontoxic=nontoxic, alpha=2.0,
                                         temperature=1.0, top_p=0.9, gate=0.0)
    gated, applied = goodtriever_step(base, toxic=toxic, nontoxic=nontoxic, alpha=2.0,
                                      temperature=1.0, top_p=0.9, gate=0.5)
    assert applied0.tolist() == [True, True]
    assert applied.tolist() == [False, True]  # row 1: total variation 0.73 on the nucleus
    assert torch.allclose(gated[0], plain[0])  # agreement: the plain nucleus distribution
    assert torch.allclose(gated[1], ungated[1])  # disagreement: the full shift
    assert gated[1, 0] > plain[1, 0] and gated[1, 1] < plain[1, 1]
    # the gate reads the nucleus only: disagreement on a token outside it does not count
    toxic_out = _nb([[1.0], [1.0]], [[3], [3]])
    nontoxic_out = _nb([[1.0], [1.0]], [[0], [3]])
    _, applied_out = goodtriever_step(base, toxic=toxic_out, nontoxic=nontoxic_out, alpha=2.0,
                                      temperature=1.0, top_p=0.9, gate=0.4)
    assert applied_out.tolist() == [True, False]
    with pytest.raises(ValueError):
        goodtriever_step(base, toxic=toxic, nontoxic=nontoxic, gate=1.5)


def test_penalize_only_pushes_down_and_never_up():
    """The clipped shift: tokens the toxic store favours lose probability as with the full
    shift, and no token gains beyond the renormalisation of the base distribution."""
    from specguard.decoding import goodtriever_step

    base = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    nontoxic = _nb([[1.0, 2.0, 3.0]], [[0, 0, 2]])
    toxic = _nb([[0.0, math.log(2.0)]], [[1, 2]])
    kw = {"toxic": toxic, "nontoxic": nontoxic, "alpha": 2.0, "temperature": 1.0, "top_p": 0.9}
    full, _ = goodtriever_step(base, **kw)
    clipped, applied = goodtriever_step(base, penalize_only=True, **kw)
    assert applied.tolist() == [True]
    # hand-computed as in test_hand_computed_example, the shift clipped at zero
    z = math.exp(-1) + math.exp(-2) + math.exp(-3)
    lp_plus = {0: math.log((math.exp(-1) + math.exp(-2)) / z), 2: math.log(math.exp(-3) / z)}
    lp_minus = {1: math.log(2 / 3), 2: math.log(1 / 3)}
    shifts = [min(0.0, lp_plus[0] - lp_minus[2]), min(0.0, lp_plus[2] - lp_minus[1]),
              min(0.0, lp_plus[2] - lp_minus[2])]
    raw = [math.log(p) + 2 * d for p, d in zip([0.5, 0.3, 0.15], shifts)]
    norm = math.log(sum(math.exp(r) for r in raw))
    for i in range(3):
        assert clipped[0, i].item() == pytest.approx(raw[i] - norm, abs=1e-5)
    assert shifts[0] == 0.0 and shifts[1] < 0.0  # the non-toxic favourite is not boosted
    # token 0 (the non-toxic store's favourite) keeps its base ratio to every unshifted token
    # and gains less than the full shift gives it; token 1 (the toxic favourite) still falls
    plain = goodtriever_logprobs(base, alpha=0.0, top_p=0.9)
    assert clipped[0, 0] > plain[0, 0] and clipped[0, 0] < full[0, 0]
    assert clipped[0, 1] < plain[0, 1]
    # alpha 0 is still the filtered base
    assert torch.allclose(goodtriever_step(base, penalize_only=True, **{**kw, "alpha": 0.0})[0],
                          plain)
    # one store: the toxic store alone already only pushes down (the same distribution as the
    # full shift); the non-toxic store alone has nothing to push down (the filtered base)
    tox_only = {**kw, "nontoxic": None}
    assert torch.allclose(goodtriever_step(base, penalize_only=True, **tox_only)[0],
                          goodtriever_step(base, **tox_only)[0], atol=1e-6)
    out, applied = goodtriever_step(base, penalize_only=True, **{**kw, "toxic": None})
    assert torch.allclose(out, plain) and applied.tolist() == [False]


def test_gate_bounds_are_the_settings_bounds_everywhere():
    from pydantic import ValidationError
    from specguard.decoding import DetoxSettings, GoodtrieverParams

    for model in (GoodtrieverParams, DetoxSettings):
        assert model(gate=0.3).gate == 0.3
        with pytest.raises(ValidationError):
            model(gate=1.2)


def test_every_loop_reads_one_set_of_bounds():
    """llama.cpp and torch loops take DetoxSettings, the vLLM processor TapSwitches: both are
    GoodtrieverParams, so a value one accepts the other accepts, and the same ones fail."""
    from pydantic import ValidationError
    from specguard.decoding import DetoxSettings, GoodtrieverParams
    from specguard.vllm_plugin import TapSwitches

    assert issubclass(DetoxSettings, GoodtrieverParams)
    assert issubclass(TapSwitches, GoodtrieverParams)
    for name, field in GoodtrieverParams.model_fields.items():
        for model in (DetoxSettings, TapSwitches):
            assert model.model_fields[name].metadata == field.metadata, (model, name)
            assert model.model_fields[name].default == field.default, (model, name)
    for bad in ({"alpha": -1}, {"k": 0}, {"k": 5000}, {"temperature": 0}, {"top_p": 0},
                {"gate": 2}):
        for model in (DetoxSettings, TapSwitches):
            with pytest.raises(ValidationError):
                model(**bad)
    sw = TapSwitches.from_xargs({"specguard_toxic": "t", "specguard_gate": 0.4,
                                 "specguard_alpha": 1.5, "specguard_penalize_only": "true"})
    assert sw.penalize_only is True and sw.to_xargs()["specguard_penalize_only"] is True
    assert sw.gate == 0.4 and DetoxSettings(**sw.model_dump(
        include=set(GoodtrieverParams.model_fields))).gate == 0.4


def test_the_combination_loads_alone_by_path_with_the_shipped_defaults():
    """bench/goodtriever_device.py loads combine.py and torch_search.py by path on a GPU machine
    without specguard or pydantic: they must not import from the package, and combine's
    written-out defaults must be GoodtrieverParams'."""
    import importlib.util
    import inspect
    from pathlib import Path

    from specguard.decoding import GoodtrieverParams

    folder = Path(__file__).resolve().parents[2] / "runtime" / "decoding"
    loaded = {}
    for name in ("combine", "torch_search"):
        spec = importlib.util.spec_from_file_location(f"_alone_{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # a relative import would fail here
        loaded[name] = module
    params = inspect.signature(loaded["combine"].goodtriever_step).parameters
    shipped = GoodtrieverParams()
    knobs = ("alpha", "temperature", "top_p", "gate", "penalize_only")
    assert {k: params[k].default for k in knobs} == {k: getattr(shipped, k) for k in knobs}
