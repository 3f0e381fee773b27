import pytest

from clamp.keypoints import ANIMALPOSE, AP10K, AP10K_CATEGORIES, COCO, KeypointSpec, get_keypoint_spec


@pytest.mark.parametrize("spec", [AP10K, ANIMALPOSE, COCO], ids=lambda s: s.name)
def test_flip_index_is_an_involution_that_swaps_each_pair(spec):
    perm = spec.flip_index
    assert sorted(perm) == list(range(spec.num_keypoints))
    assert all(perm[perm[i]] == i for i in range(spec.num_keypoints))
    for a, b in spec.flip_pairs:
        assert perm[a] == b and perm[b] == a


@pytest.mark.parametrize("spec", [AP10K, ANIMALPOSE, COCO], ids=lambda s: s.name)
def test_spec_survives_dict_round_trip(spec):
    assert KeypointSpec.from_dict(spec.to_dict()) == spec
    assert get_keypoint_spec(spec.to_dict()) == spec


def test_ap10k_matches_the_fixture_json(fixtures_dir):
    import json

    cats = json.loads((fixtures_dir / "ap10k_mini" / "test_ap10k.json").read_text())["categories"]
    assert [(c["id"], c["name"], c["supercategory"]) for c in cats] == [
        (s.id, s.name, s.family) for s in AP10K_CATEGORIES
    ]
    assert tuple(cats[0]["keypoints"]) == AP10K.keypoint_names
    assert [tuple(e) for e in cats[0]["skeleton"]] == [(a + 1, b + 1) for a, b in AP10K.skeleton]


def test_animalpose_matches_the_fixture_json(fixtures_dir):
    import json

    cat = json.loads((fixtures_dir / "animalpose_mini" / "test_animalpose.json").read_text())["categories"][0]
    assert tuple(cat["keypoints"]) == ANIMALPOSE.keypoint_names
    assert [tuple(e) for e in cat["skeleton"]] == [(a + 1, b + 1) for a, b in ANIMALPOSE.skeleton]


def test_ap10k_uses_the_corrected_sigma_order():
    # The pre-Dec-2021 list interleaved left/right like COCO; shoulder and elbow must differ here.
    assert AP10K.sigmas[5] == AP10K.sigmas[8] == 0.079
    assert AP10K.sigmas[6] == 0.072


def test_unknown_spec_name_lists_known_ones():
    with pytest.raises(KeyError, match="ap10k"):
        get_keypoint_spec("horse-keypoints")


def test_inconsistent_spec_is_rejected():
    with pytest.raises(ValueError, match="prompt_words"):
        KeypointSpec("bad", ("a", "b"), ("a",), (), (0.1, 0.1), (), ())
