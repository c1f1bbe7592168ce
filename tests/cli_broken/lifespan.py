"""Applications whose lifespan startup raises, and one whose kind cannot be
told without running its (failing) code."""


async def startup_raises(scope, receive, send):
    await receive()
    raise RuntimeError("the cache server is down")  # line 7


class _Lazy:
    @property
    def send(self):
        raise RuntimeError("lazy attribute failed")  # line 13

    def __call__(self, scope):
        return None


lazy = _Lazy()


async def shutdown_raises(scope, receive, send):
    if scope["type"] != "lifespan":
        return
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    raise RuntimeError("could not flush the queue")  # line 28
