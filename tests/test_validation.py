import pytest

from siamtext.validation import check_choice, check_positive_int, check_texts


def test_check_texts_accepts_string_list_tuple_and_generator():
    assert check_texts("a") == ["a"]
    assert check_texts(["a", ""]) == ["a", ""]
    assert check_texts(("a", "b")) == ["a", "b"]
    assert check_texts(t for t in ["x"]) == ["x"]
    assert check_texts([]) == []


@pytest.mark.parametrize("bad", [None, 3, b"bytes", {"a": 1}])
def test_check_texts_rejects_non_sequences(bad):
    with pytest.raises(TypeError, match="sentences must be a string or a list of strings"):
        check_texts(bad)


def test_check_texts_names_the_bad_index():
    with pytest.raises(TypeError, match=r"sentences\[2\] must be a string, got NoneType"):
        check_texts(["a", "b", None])
    with pytest.raises(TypeError, match=r"texts\[0\] must be a string, got int"):
        check_texts([1], "texts")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "8"])
def test_check_positive_int(bad):
    assert check_positive_int(4, "batch_size") == 4
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        check_positive_int(bad, "batch_size")


def test_check_choice():
    assert check_choice("a", ("a", "b"), "x") == "a"
    with pytest.raises(ValueError, match=r"x must be one of \['a', 'b'\], got 'c'"):
        check_choice("c", ("a", "b"), "x")
