"""A TCP proxy on 127.0.0.1 that holds every chunk DELAY seconds in each direction, in
order: a relay that is further away than the same machine (the round trip grows by twice
DELAY). Used by bench/rtt.sh; this kernel has no netem to do it.

    python3 bench/delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_SECONDS
"""
import asyncio
import sys

LISTEN, TARGET, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])



async def pipe(reader, writer):
    loop = asyncio.get_running_loop()
    q = asyncio.Queue()
    async def feed():
        while True:
            data = await reader.read(1 << 16)
            q.put_nowait((loop.time() + DELAY, data))
            if not data:
                return
    async def send():
        while True:
            due, data = await q.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                try:
                    writer.close()
                except OSError:
                    pass
                return
            writer.write(data)
            await writer.drain()
    await asyncio.gather(feed(), send())


async def handle(cr, cw):
    sr, sw = await asyncio.open_connection('127.0.0.1', TARGET)
    await asyncio.gather(pipe(cr, sw), pipe(sr, cw), return_exceptions=True)


async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', LISTEN)
    async with srv:
        await srv.serve_forever()


asyncio.run(main())
