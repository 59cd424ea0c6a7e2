"""A StatusNotifierWatcher on the test desktop's bus: the tray host of modern desktops, for the appindicator backend.

It accepts item registrations as KDE's and GNOME's hosts do, and reads what a host shows: the item's Title and
IconName (org.kde.StatusNotifierItem), and its menu (com.canonical.dbusmenu), whose items it can click. It runs
dbus-fast on an asyncio loop of its own, on a named thread; `stop()` ends both.
"""

# dbus-fast declares D-Bus signatures as string annotations ("s", "b", "as"), which are not Python types,
# and leaves a few of its own functions unannotated.
# mypy: disable-error-code="name-defined, valid-type, misc, no-untyped-call"
# ruff: noqa: F821, F722

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_property, method

WATCHER = "org.kde.StatusNotifierWatcher"
ITEM = "org.kde.StatusNotifierItem"
MENU = "com.canonical.dbusmenu"
CALL_TIMEOUT_SECONDS = 10.0
T = TypeVar("T")


class _WatcherInterface(ServiceInterface):
    def __init__(self) -> None:
        super().__init__(WATCHER)

    @method()
    def RegisterStatusNotifierItem(self, service: s) -> "":
        pass  # the sender is noted by StatusNotifierWatcher._noted, which sees the whole message

    @method()
    def RegisterStatusNotifierHost(self, service: s) -> "":
        pass

    @dbus_property(access=PropertyAccess.READ)
    def IsStatusNotifierHostRegistered(self) -> b:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def ProtocolVersion(self) -> i:
        return 0

    @dbus_property(access=PropertyAccess.READ)
    def RegisteredStatusNotifierItems(self) -> "as":
        return []


@dataclass(frozen=True)
class MenuItem:
    id: int
    label: str
    enabled: bool
    children: tuple[MenuItem, ...]


class StatusNotifierWatcher:
    def __init__(self, bus_address: str) -> None:
        self.bus_address = bus_address
        self.items: list[tuple[str, str]] = []
        """(bus name, object path) of each registered item."""
        self._registered = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-sni-watcher")
        self._bus: MessageBus | None = None

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    async def _start(self) -> None:
        self._bus = await MessageBus(bus_address=self.bus_address).connect()
        self._bus.add_message_handler(self._noted)
        self._bus.export("/StatusNotifierWatcher", _WatcherInterface())
        await self._bus.request_name(WATCHER)

    def stop(self) -> None:
        if self._bus is not None:
            self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT_SECONDS)
        self._loop.close()

    async def _stop(self) -> None:
        assert self._bus is not None
        self._bus.disconnect()
        await self._bus.wait_for_disconnect()

    def _noted(self, message: Message) -> None:
        if message.message_type is MessageType.METHOD_CALL and message.member == "RegisterStatusNotifierItem":
            service = message.body[0]
            # libappindicator passes its object path; others pass their bus name (then the path is the default).
            path = service if service.startswith("/") else "/StatusNotifierItem"
            self.items.append((message.sender, path))
            self._registered.set()

    def wait_for_item(self, timeout: float = CALL_TIMEOUT_SECONDS) -> tuple[str, str]:
        if not self._registered.wait(timeout):
            raise AssertionError("no StatusNotifierItem registered")
        return self.items[-1]

    # --- what a host reads, and what a click does --------------------------------------------------------------

    def item_property(self, name: str) -> Any:
        sender, path = self.wait_for_item()
        return self._call(self._get(sender, path, ITEM, name))

    def menu(self) -> MenuItem:
        sender, _path = self.wait_for_item()
        menu_path = self.item_property("Menu")
        return self._call(self._layout(sender, menu_path))

    def click(self, label: str) -> None:
        """Click the menu item with this label (searched through submenus), as a host does."""
        sender, _path = self.wait_for_item()
        menu_path = self.item_property("Menu")
        found = _find(self.menu(), label)
        if found is None:
            raise AssertionError(f"no menu item {label!r}")
        self._call(self._request(sender, menu_path, MENU, "Event", "isvu", [found.id, "clicked", Variant("s", ""), 0]))

    async def _get(self, sender: str, path: str, interface: str, name: str) -> Any:
        body = await self._request(sender, path, "org.freedesktop.DBus.Properties", "Get", "ss", [interface, name])
        return body[0].value

    async def _layout(self, sender: str, path: str) -> MenuItem:
        body = await self._request(sender, path, MENU, "GetLayout", "iias", [0, -1, []])
        return _menu_item(body[1])

    async def _request(
        self, destination: str, path: str, interface: str, member: str, signature: str, body: list[Any]
    ) -> list[Any]:
        assert self._bus is not None
        call = Message(
            destination=destination, path=path, interface=interface, member=member, signature=signature, body=body
        )
        reply = await self._bus.call(call)
        if reply is None or reply.message_type is MessageType.ERROR:
            raise AssertionError(f"{member} on {path}: {reply.body if reply else 'no reply'}")
        return list(reply.body)

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT_SECONDS)


def _menu_item(layout: list[Any]) -> MenuItem:
    item_id, properties, children = layout
    return MenuItem(
        id=item_id,
        label=properties["label"].value if "label" in properties else "",
        enabled=properties["enabled"].value if "enabled" in properties else True,
        children=tuple(_menu_item(child.value) for child in children),
    )


def _find(item: MenuItem, label: str) -> MenuItem | None:
    if item.label.replace("_", "") == label:
        return item
    return next((found for child in item.children if (found := _find(child, label)) is not None), None)


def labels(item: MenuItem, depth: int = 0) -> list[str]:
    """The menu as indented labels, the way tray.menu.outline writes it (without its disabled marks)."""
    lines = []
    for child in item.children:
        lines.append("  " * depth + child.label.replace("_", ""))
        lines.extend(labels(child, depth + 1))
    return lines
