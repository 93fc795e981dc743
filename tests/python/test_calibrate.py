"""crossicl.calibrate (contextual calibration) from Python: a hand-computed case, an independent numpy version on
random inputs, and the ValueErrors."""
import math

import numpy as np
import pytest

import crossicl


def numpy_calibrate(x: np.ndarray, cf: np.ndarray) -> np.ndarray:
    """Zhao et al.'s W = diag(p_cf)^-1 in probability space, written plainly (not in log space)."""
    def softmax(a):
        e = np.exp(a - a.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    p_cf = softmax(cf).mean(axis=0)
    q = softmax(x) @ np.diag(1.0 / p_cf)
    return np.log(q / q.sum(axis=1, keepdims=True))


def test_hand_computed():
    q = crossicl.calibrate(np.log([[0.6, 0.4]]), np.log([[0.8, 0.2], [0.6, 0.4]]))
    assert q.shape == (1, 2) and q.dtype == np.float64
    # p_cf = (0.7, 0.3); q = (0.6/0.7, 0.4/0.3) normalised = (9/23, 14/23): the arg-max moves to label 1
    np.testing.assert_allclose(np.exp(q), [[9 / 23, 14 / 23]], rtol=1e-14)
    # nested lists work too
    assert np.allclose(crossicl.calibrate([[math.log(0.6), math.log(0.4)]], [[math.log(0.8), math.log(0.2)]]),
                       np.log([[0.6 / 0.8 / 2.75, 0.4 / 0.2 / 2.75]]))


@pytest.mark.parametrize("seed", range(5))
def test_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    n, m, c = int(rng.integers(1, 40)), int(rng.integers(2, 8)), int(rng.integers(1, 4))
    x = rng.normal(-5, 3, (n, m))   # sums of label-token log-probs: unnormalised
    cf = rng.normal(-5, 3, (c, m))
    got = crossicl.calibrate(x, cf)
    want = numpy_calibrate(x, cf)
    # both in float64; the only differences are the orders of a few exp/log/sum steps
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    assert (got.argmax(1) == want.argmax(1)).all()


def test_empty_items_keep_the_width():
    assert crossicl.calibrate(np.zeros((0, 3)), np.zeros((2, 3))).shape == (0, 3)


@pytest.mark.parametrize("x, cf, words", [
    (np.zeros((2, 3)), np.zeros((1, 4)), "3 labels but content_free_logprobs has 4"),
    (np.zeros((2, 3)), np.zeros((0, 3)), "c = 0"),
    (np.array([[0.0, -np.inf]]), np.zeros((1, 2)), "label_logprobs[0, 1] is -inf"),
    (np.zeros((1, 2)), np.array([[0.0, 0.0], [np.nan, 1.0]]), "content_free_logprobs[1, 0] is nan"),
    (np.zeros(3), np.zeros((1, 3)), "2-D"),
])
def test_errors(x, cf, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        crossicl.calibrate(x, cf)
