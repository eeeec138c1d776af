"""The language setting (paper §2.1, App. C, E.1): corpus, tokenizer, model, training, metrics.

``SETTING`` (:class:`devbook.language.setting.LanguageSetting`) is what the chapter uses.
"""

from devbook.language.setting import SETTING, LanguageSetting

__all__ = ["SETTING", "LanguageSetting"]
