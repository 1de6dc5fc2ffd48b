"""Notebook 07's checkers accept the right answers and name the usual mistakes."""

from __future__ import annotations

import math

import torch

from flowedu.exercises import EXERCISES, check


def _conv1x1(weight, height, width):
    return height * width * torch.linalg.slogdet(weight)[1]


def _bpd(nats, dims):
    return nats / (dims * math.log(2))


def _logit(x, alpha, levels):
    p = alpha + (1 - 2 * alpha) * x / levels
    return (math.log((1 - 2 * alpha) / levels) - torch.log(p) - torch.log1p(-p)).sum((1, 2, 3))


def test_the_exercises_are_registered():
    assert {"07.conv1x1_log_det", "07.bits_per_dim", "07.logit_log_det"} <= set(EXERCISES)


def test_right_answers_pass():
    assert check("07.conv1x1_log_det", _conv1x1)
    assert check("07.bits_per_dim", _bpd)
    assert check("07.logit_log_det", _logit)


def test_conv1x1_mistakes_are_named():
    no_pixels = check("07.conv1x1_log_det", lambda w, h, wd: torch.linalg.slogdet(w)[1])
    assert not no_pixels and "height * width" in no_pixels.message
    no_abs = check("07.conv1x1_log_det", lambda w, h, wd: h * wd * torch.log(torch.linalg.det(w)))
    assert not no_abs and "absolute" in no_abs.message
    plus = check("07.conv1x1_log_det", lambda w, h, wd: (h + wd) * torch.linalg.slogdet(w)[1])
    assert not plus and "not height + width" in plus.message
    unanswered = check("07.conv1x1_log_det", lambda w, h, wd: None)
    assert not unanswered and "returned None" in unanswered.message


def test_bits_per_dim_mistakes_are_named():
    per_dim = check("07.bits_per_dim", lambda nats, d: nats / d)
    assert not per_dim and "nats per dimension" in per_dim.message
    per_image = check("07.bits_per_dim", lambda nats, d: nats / math.log(2))
    assert not per_image and "bits per image" in per_image.message
    assert not check("07.bits_per_dim", lambda nats, d: None)


def test_logit_mistakes_are_named():
    def no_scale(x, alpha, levels):
        p = alpha + (1 - 2 * alpha) * x / levels
        return (-torch.log(p) - torch.log1p(-p)).sum((1, 2, 3))

    result = check("07.logit_log_det", no_scale)
    assert not result and "chain rule" in result.message
    flipped = check("07.logit_log_det", lambda x, a, lv: -_logit(x, a, lv))
    assert not flipped and "sign" in flipped.message
    crash = check("07.logit_log_det", lambda x, a, lv: 1 / 0)
    assert not crash and "ZeroDivisionError" in crash.message
