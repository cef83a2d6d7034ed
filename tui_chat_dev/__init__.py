"""Development tools for tui-chat: never shipped in the wheel, importable from a checkout.

- ``emulator``: the Lambda handlers behind a local API Gateway over moto's DynamoDB
  (``python -m tui_chat_dev serve-lambda``), so the cloud code path runs on 127.0.0.1;
- ``serverproc``: a real ``tui-chat serve`` (or the emulator) as a subprocess, for tests and benchmarks;
- ``faultproxy``: a TCP proxy that cuts, stalls and delays links;
- ``wsclient``: a bare protocol client;
- ``memory_keyring``: a keyring backend that keeps passwords in a dict.
"""
