"""The Dify side of the bot: ``dify_client.DifyClient`` and its typed ``errors``.

Import the modules directly (``from aimbot.api.dify_client import DifyClient``); this package
itself imports nothing, so importing ``aimbot.api.errors`` never pulls in aiohttp.
"""
