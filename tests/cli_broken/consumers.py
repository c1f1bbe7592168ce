"""A consumers module with a typo: a NameError when it is imported."""


class ChatConsumer:
    groups = [GROUP_NAME]  # noqa: F821 - the typo under test (line 5)
