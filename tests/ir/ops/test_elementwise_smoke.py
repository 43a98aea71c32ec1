import numpy as np
import pytest
from oracle import check_vs_onnx, rand


@pytest.mark.parametrize("op,onnx_type", [("ember.add", "Add"), ("ember.mul", "Mul"), ("ember.div", "Div")])
def test_binary_float(op, onnx_type):
    check_vs_onnx(op, onnx_type, [rand((2, 3)), rand((3,))])


def test_div_int_truncates():
    x = np.array([7, -7, 7, -7], np.int32)
    y = np.array([2, 2, -2, -2], np.int32)
    got = check_vs_onnx("ember.div", "Div", [x, y])
    assert got[0].tolist() == [3, -3, -3, 3]
