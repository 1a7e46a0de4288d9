import pytest

from harness.errors import ConfigError
from harness.plugins import is_import_path, load_object


def test_load_object_resolves_a_nested_attribute():
    import collections

    assert load_object("optimizer", "collections:OrderedDict.fromkeys") == collections.OrderedDict.fromkeys


@pytest.mark.parametrize("path, fragment", [
    ("no_such_module_xyz:thing", "importing 'no_such_module_xyz' failed"),
    ("collections:NoSuchThing", "has no 'NoSuchThing'"),
    ("not an import path", "import path"),
    ("os.system('x'):y", "import path"),
])
def test_load_object_errors_are_one_line(path, fragment):
    with pytest.raises(ConfigError) as info:
        load_object("dataset", path)
    message = str(info.value)
    assert message.startswith("dataset: ") and fragment in message and "\n" not in message


def test_registry_names_are_not_import_paths():
    assert not is_import_path("sam") and is_import_path("torch.optim:AdamW")
