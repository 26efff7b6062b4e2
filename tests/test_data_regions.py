from benchmark.data.regions import REGIONS, mentioned_regions, multilabel, regions_of


def test_order_and_size_match_the_official_vector():
    assert REGIONS[:5] == ("eye", "pupil", "lip", "mouth", "nose")
    assert REGIONS[-1] == "dimple" and len(REGIONS) == 21


def test_whole_words_case_insensitive_with_synonyms():
    assert mentioned_regions("The NOSTRILS look smeared") == {"nose"}
    assert mentioned_regions("buccal area") == {"mouth", "cheek"}
    assert mentioned_regions("Her brows and eyebrows") == {"forehead", "eyebrow"}
    assert mentioned_regions("eyeliner and noses") == {"nose"}  # 'eye' is not a whole word in 'eyeliner'
    assert mentioned_regions("facial hair is patchy") == {"beard", "hair"}  # "hair" is a whole word too
    assert mentioned_regions("") == frozenset()


def test_multilabel_round_trip():
    text = "The teeth and the tongue look blurry; a scar is painted on the chin."
    vec = multilabel(text)
    assert sum(vec) == 4 and regions_of(vec) == {"tooth", "tongue", "scar", "chin"}
