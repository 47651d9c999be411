"""Pure Block Kit builders: domain values in, Slack messages and views out (no I/O, no Slack client).

Every builder keeps its output within Slack's limits (blocks per message or view, text lengths), whatever the
lab looks like, so a long name or a huge output tail can never make Slack refuse a message.

Import the builders from their modules (``bot.blocks.card``, ``bot.blocks.replies``, ...): this package
re-exports nothing, so no builder module depends on the package that contains it.
"""
