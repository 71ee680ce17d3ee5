"""Ids: unique, ordered within a process, different prefixes across makers."""

from broker.ids import id_maker


def test_ids_are_unique_ordered_and_padded():
    new_id = id_maker()
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == 1000 and ids == sorted(ids)
    assert len(ids[0]) == 24 and ids[0].endswith("000000000001")


def test_unpadded_ids_and_separate_makers():
    a, b = id_maker(0), id_maker(0)
    first = a()
    assert first.endswith("1") and len(first) == 13
    assert first[:12] != b()[:12]  # another random prefix
