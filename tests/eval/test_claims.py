"""The claims page: each verdict follows from the numbers by its stated rule."""

from __future__ import annotations

from gradleak.showcase.claims import (
    QUICK, Measurements, accuracy_claim, claims_page, dropout_claim, overhead_claim, participation_claim,
)

PLAN = QUICK


def secagg(point, **fields):
    base = {"key": point.key, "kind": "secagg", "correct": True, "aborted": False, "neighbors": point.clients - 1,
            "threshold": point.clients // 2 + 1, "plaintext_bytes": 4 * point.dim, "client_bytes_sent": 4 * point.dim,
            "client_bytes_received": 100, "upload_expansion": 1.0, "expansion": 1.1, "client_seconds": 0.01,
            "server_seconds": 0.02}
    return {**base, **fields}


def utility(config, defense, accuracy, seed=0):
    return {"key": f"{config.setting}{defense}{seed}", "kind": "utility", "accuracy": accuracy, "seed": seed,
            "label": {"setting": config.setting, "defense": defense}, "config": {"rounds": config.rounds},
            "noise_multiplier": 1.0}


def test_overhead_verdict_follows_the_measured_expansion():
    (point,) = PLAN.overhead
    assert overhead_claim(PLAN, Measurements(secagg={point.key: secagg(point, expansion=1.06)})).verdict == "refuted"
    assert overhead_claim(PLAN, Measurements(secagg={point.key: secagg(point, expansion=2.5)})).verdict == "confirmed"
    assert overhead_claim(PLAN, Measurements()).verdict == "not measured"


def test_dropout_verdict_needs_every_rate_in_every_configuration():
    records = {p.key: secagg(p, aborted=p.dropout > 0.3, correct=p.dropout <= 0.3) for p in PLAN.dropout}
    assert dropout_claim(PLAN, Measurements(secagg=records)).verdict == "confirmed"
    active_30 = next(p for p in PLAN.dropout if p.active and p.dropout == 0.3)
    records[active_30.key] = secagg(active_30, aborted=True, correct=False)
    verdict = dropout_claim(PLAN, Measurements(secagg=records))
    assert verdict.verdict == "partly confirmed" and "aborted cleanly" in verdict.body


def test_accuracy_verdict_compares_each_level_with_its_claimed_range():
    (config,) = PLAN.populations
    records = [utility(config, "none", 0.90), utility(config, "dp-fedavg:epsilon=1", 0.80),
               utility(config, "dp-fedavg:epsilon=3", 0.85), utility(config, "dp-fedavg:epsilon=8", 0.895)]
    assert accuracy_claim(PLAN, Measurements(utility=records)).verdict == "confirmed"
    records[-1] = utility(config, "dp-fedavg:epsilon=8", 0.70)  # ε = 8 losing 20 points does not "preserve"
    verdict = accuracy_claim(PLAN, Measurements(utility=records))
    assert verdict.verdict == "partly confirmed" and "2 of 3" in verdict.summary


def test_participation_verdict_and_the_page():
    full, partial = PLAN.participation
    close = Measurements(utility=[utility(full, "none", 0.90), utility(partial, "none", 0.89)])
    assert participation_claim(PLAN, close).verdict == "confirmed"
    far = Measurements(utility=[utility(full, "none", 0.90), utility(partial, "none", 0.80)])
    assert participation_claim(PLAN, far).verdict == "refuted"
    page = claims_page(PLAN, far, "gradleak claims --quick")
    assert page.count("\n## ") == 6 and "`gradleak claims --quick`" in page and "**refuted**" in page


def test_a_trial_run_never_overwrites_the_published_page(tmp_path, monkeypatch):
    """``gradleak claims --quick`` in a checkout writes under gradleak-out/, not over docs/claims.md."""
    import argparse

    from gradleak.commands import claims as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["claims", "--quick"])
    assert not args.out.startswith("docs")
    written = []
    monkeypatch.setattr(command, "measure_claims", lambda *a: Measurements())
    monkeypatch.setattr(command, "claims_page", lambda plan, m, cmd: written.append(cmd) or cmd)
    monkeypatch.chdir(tmp_path)
    command.run(args)
    assert (tmp_path / args.out).read_text() == written[0] and f"--out {args.out}" in written[0]
    assert not (tmp_path / "docs").exists()


def test_inference_verdicts_follow_the_confidence_interval_not_the_point_estimate():
    from gradleak.showcase.claims import inference_verdict
    from gradleak.eval.differencing import Trials

    dp = Trials(100, 200)
    assert inference_verdict(Trials(200, 200), dp) == ("confirmed", "closed by DP-FedAvg at ε = 1")
    assert inference_verdict(Trials(20, 20), dp)[0] == "confirmed"  # 20/20: interval 83-100%, above 60%
    assert inference_verdict(Trials(104, 200), dp)[0] == "refuted"  # 52%: interval 45-59%, at or below 60%
    assert inference_verdict(Trials(14, 20), dp)[0] == "not settled"  # 70% point estimate, interval 46-88%
    assert inference_verdict(Trials(200, 200), Trials(130, 200))[1] == "not shown closed by DP-FedAvg at ε = 1"


def test_join_leave_claims_read_the_differencing_trials():
    from gradleak.showcase.claims import recognition_claim, shift_claim

    m = Measurements(differencing={"none": {"trials": 200, "label": 200, "model": 100},
                                   "dp": {"trials": 200, "label": 101, "model": 99}})
    assert shift_claim(PLAN, m).verdict == "confirmed"
    assert recognition_claim(PLAN, m).verdict == "refuted"
    assert shift_claim(PLAN, Measurements()).verdict == "not measured"
    assert "Clopper" in shift_claim(PLAN, m).body
