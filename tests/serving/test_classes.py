from pathlib import Path

import pytest

from serving.classes import ClassSchema, ClassSchemaError, load_classes


def test_default_schema_matches_design() -> None:
    schema = load_classes()
    assert schema.names == [
        "nodata", "forest", "cocoa_agroforestry", "oil_palm", "degraded", "other"
    ]
    assert schema.nodata == 0
    assert schema.valid_codes == [1, 2, 3, 4, 5]
    assert schema.colormap()[1] == (0x1B, 0x5E, 0x20, 255)
    assert ClassSchema.from_dict(schema.to_dict()) == schema


def test_dataset_schema_loads(tmp_path: Path) -> None:
    schema = ClassSchema.from_yaml(Path("tests/data/rondonia/classes.yaml"))
    assert schema.names == ["nodata", "forest", "degraded", "other"]
    assert schema.code_of("other") == 3


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ([{"code": 0, "name": "a", "colour": "#000000"},
          {"code": 2, "name": "b", "colour": "#000000"}], "codes must be 0..1"),
        ([{"code": 0, "name": "a", "colour": "#000000"},
          {"code": 1, "name": "a", "colour": "#000000"}], "unique"),
        ([{"code": 0, "name": "a", "colour": "green"}], "colour"),
        ([{"code": 0, "name": "a"}], "missing"),
    ],
)
def test_bad_schema_is_refused_with_reason(classes: list, message: str) -> None:
    with pytest.raises(ClassSchemaError, match=message):
        ClassSchema.from_dict({"nodata": 0, "classes": classes})
