import siamtext.demo
from siamtext import samples
from siamtext.backends import openvino


def test_sample_intents_and_questions():
    texts, labels = samples.load_demo_intents()
    assert len(texts) == len(labels) == 320
    assert len(set(labels)) == 16 and all(labels.count(label) == 20 for label in set(labels))
    questions = samples.load_demo_questions()
    assert len(questions) == 60 and all(q.strip() for q in questions)
    groups = samples.load_demo_question_groups()
    assert all(0 <= i < len(questions) for group in groups for i in group)


def test_demo_reexports_the_loaders():
    for name in samples.__all__:
        assert getattr(siamtext.demo, name) is getattr(samples, name)


def test_openvino_calibrates_on_the_samples():
    texts = openvino._default_calibration()
    expected = samples.load_demo_intents()[0] + samples.load_demo_questions()
    assert texts == expected[:openvino.CALIBRATION_SIZE]
