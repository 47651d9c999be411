"""A LABBOT_SECRET_KEY strong enough for the commands that refuse weak keys (services.crypto
.require_strong_secret_key), shared by tests that start labbot processes and the worlds that read their secrets."""

SECRET_KEY = "swEnMeEc5JlUMV3MScyxbkpUbxeAaEnPuaQu_pv9ACw"
