from tests.client.conftest import memory_keyring  # noqa: F401 - never touch the OS keyring
