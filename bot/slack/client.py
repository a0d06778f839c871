"""The Slack Web API client: `SLACK_API_URL`, one aiohttp session, bounded retries (429, 5xx)."""

from __future__ import annotations

import aiohttp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

WEB_API_TIMEOUT_SECONDS = 15
RATE_LIMIT_RETRIES = 4  # each waits Slack's Retry-After
SERVER_ERROR_RETRIES = 2


def create_web_client(
    *, token: str, base_url: str, session: aiohttp.ClientSession
) -> AsyncWebClient:
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        session=session,
        timeout=WEB_API_TIMEOUT_SECONDS,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=SERVER_ERROR_RETRIES),
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
            AsyncServerErrorRetryHandler(max_retry_count=SERVER_ERROR_RETRIES),
        ],
    )


def without_waits(client: AsyncWebClient) -> AsyncWebClient:
    """`client` for calls that must not wait out a rate limit: the progress shown while an
    answer is worked on, which the answer replaces anyway. Such a call is one round trip, so
    the answer can wait for one in flight (and land after it); a 429 is the caller's to pace."""
    return AsyncWebClient(
        token=client.token,
        base_url=client.base_url,
        session=client.session,
        timeout=client.timeout,
        retry_handlers=[],
    )
