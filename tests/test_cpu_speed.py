"""What the CPU speed-ups promise: the same values, and the allocator setting applied or declined as documented."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from ssuper_lib.models.backbone import build_efficientnet, use_fast_kernels


def _state_in_fresh_process(env_extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "SSUPER_MALLOC"}
    env.update(env_extra)
    code = "import json, ssuper_lib.allocator as a; print(json.dumps(a.allocator_state()))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt: Linux only")
def test_importing_the_kit_sets_the_allocator_unless_told_not_to():
    assert _state_in_fresh_process({}) == {"applied": True, "why": "applied"}
    off = _state_in_fresh_process({"SSUPER_MALLOC": "system"})
    assert off["applied"] is False and "SSUPER_MALLOC=system" in off["why"]
    own = _state_in_fresh_process({"MALLOC_TRIM_THRESHOLD_": "1000000"})
    assert own["applied"] is False and "MALLOC_TRIM_THRESHOLD_" in own["why"], "a user's own glibc setting wins"


def test_lite0_in_place_relu6_gives_the_same_values_and_gradients():
    torch.manual_seed(0)
    fast = use_fast_kernels(build_efficientnet("efficientnet-lite0", (64, 64)))
    relus = [m for m in fast.modules() if isinstance(m, nn.ReLU6)]
    assert relus and all(m.inplace for m in relus), "Lite0's ReLU6 should clamp in place"
    plain = use_fast_kernels(build_efficientnet("efficientnet-lite0", (64, 64)))
    plain.load_state_dict(fast.state_dict())
    for m in plain.modules():
        if isinstance(m, nn.ReLU6):
            m.inplace = False
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    outs, grads = [], []
    for net in (fast, plain):
        net.train()
        torch.manual_seed(1)  # the same drop-connect draws
        xi = x.clone().requires_grad_(True)
        y = net.extract_features(xi)
        y.square().mean().backward()  # training end to end: autograd accepts the in-place clamp
        outs.append(y.detach())
        grads.append(xi.grad)
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(grads[0], grads[1])
