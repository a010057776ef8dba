"""Online experiments (admin key): create, list, read, stop, promote."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import HTTPException, Request
from fastapi import Path as PathParam

from shopsense.errors import ShopsenseError
from shopsense.serving.experiment_report import experiment_report, winner
from shopsense.serving.experiments import (
    Experiment,
    create_experiment,
    experiments,
    get_experiment,
    promote_arm,
    stop_experiment,
)
from shopsense.serving.limits import declared
from shopsense.serving.routes import admin_router
from shopsense.serving.schemas import ExperimentIn, ExperimentOut, PromoteIn, invalid
from shopsense.serving.service import Service, service_of

router = admin_router("experiments")
Name = Annotated[str, PathParam(min_length=1, max_length=64)]
UNKNOWN = declared(404, "No experiment of that name.")


CREATE_REFUSALS = {
    **declared(404, "An arm names a model version this service does not have."),
    **declared(409, "The name is taken, or the placement has a running experiment."),
}


@router.post(
    "/admin/experiments", response_model=ExperimentOut, status_code=201, responses=CREATE_REFUSALS
)
def create(request: Request, body: ExperimentIn) -> ExperimentOut:
    """Start an experiment on every worker. An arm of a recommendation
    placement is a model version of the registry (the first arm is the
    control); an arm of search is ``personalized`` or ``unpersonalized``.
    ``shares`` has one share per arm, adding up to at most 1; interleaving
    takes exactly two arms (422 otherwise)."""
    service = service_of(request)
    shares = body.shares or [1.0 / len(body.arms)] * len(body.arms)
    if len(shares) != len(body.arms):
        raise invalid(["body", "shares"], "give one share per arm")
    try:
        experiment = Experiment(
            name=body.name, placement=body.placement, arms=dict(body.arms),
            shares=dict(zip(body.arms, shares, strict=True)), metric=body.metric,
            guardrails=tuple(body.guardrails), kind=body.kind,
            attribution_seconds=round(body.attribution_hours * 3600),
        )  # fmt: skip
    except ShopsenseError as e:
        raise invalid(["body"], str(e)) from None
    if experiment.placement != "search":
        known = service.model_version_names()
        missing = [v for v in experiment.arms.values() if v not in known]
        if missing:
            raise HTTPException(404, f"no model version {', '.join(missing)} here")
    try:
        create_experiment(service.store, experiment)
    except ShopsenseError as e:
        raise HTTPException(409, str(e)) from None
    service.in_effect()
    return ExperimentOut(**experiment.to_dict())


@router.get("/admin/experiments", response_model=list[ExperimentOut])
def list_all(request: Request) -> list[ExperimentOut]:
    """Every experiment, oldest first."""
    service = service_of(request)
    return [ExperimentOut(**e.to_dict()) for e in experiments(service.store).values()]


@router.get("/admin/experiments/{name}", response_model=dict[str, Any], responses=UNKNOWN)
async def show(request: Request, name: Name) -> dict[str, Any]:
    """Per arm: shoppers, impressions, clicks, carts, purchases, revenue and
    rates; per arm against the control: the lift with its 95% interval and
    p-values (fixed-horizon and always-valid), the sample-ratio check; for
    interleaving, the preference test. The same as ``experiment show --json``."""
    service = service_of(request)
    experiment = _found(service, name)
    return await service.on_a_core(partial(experiment_report, service.store, experiment))


@router.post("/admin/experiments/{name}/stop", response_model=ExperimentOut, responses=UNKNOWN)
def stop(request: Request, name: Name) -> ExperimentOut:
    """Every shopper sees the champion again; the figures stay."""
    service = service_of(request)
    _found(service, name)
    stopped = stop_experiment(service.store, name)
    service.in_effect()
    return ExperimentOut(**stopped.to_dict())


@router.post(
    "/admin/experiments/{name}/promote",
    response_model=ExperimentOut,
    responses={**UNKNOWN, **declared(409, "No arm won: name the arm to promote.")},
)
def promote(request: Request, name: Name, body: PromoteIn | None = None) -> ExperimentOut:
    """Serve an arm to everyone (hot swap on every worker) and stop the
    experiment: the arm named, or the one the always-valid test says won."""
    service = service_of(request)
    experiment = _found(service, name)
    arm = body.arm if body is not None else None
    if arm is None:
        arm = winner(experiment_report(service.store, experiment))
        if arm is None:
            raise HTTPException(409, "no arm has won (yet): name the arm to promote")
    try:
        promoted = promote_arm(service.store, service.settings.models, name, arm)
    except ShopsenseError as e:
        raise invalid(["body", "arm"], str(e)) from None
    service.in_effect()
    return ExperimentOut(**promoted.to_dict())


def _found(service: Service, name: str) -> Experiment:
    try:
        return get_experiment(service.store, name)
    except ShopsenseError as e:
        raise HTTPException(404, str(e)) from None
