"""The service's command-line handlers: ``serve``, ``migrate``, ``keys`` and ``recommend``.

Each takes the parsed ``argparse.Namespace`` from ``acprop_tuner.cli`` and returns an exit
code. Configuration comes from the environment (``ACPROP_TUNER_*``), never from arguments,
so a database password never shows in the process list; messages print the URL redacted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import uuid
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from acprop_tuner.cli.terminal import safe, safe_lines
from service.db.engine import create_db_engine
from service.db.migrate import SchemaNotAtHead, check_at_head, current_revision, upgrade
from service.db.models import KeyScope
from service.db.session import create_session_factory, session_scope
from service.errors import ServiceError, is_database_unavailable
from service.settings import Settings, get_settings


def _fail(message: str, code: int = 1) -> int:
    print(f"acprop-tuner: {safe(message)}", file=sys.stderr)
    return code


def _unreachable(settings: Settings, exc: BaseException) -> int:
    return _fail(
        f"cannot reach the database at {settings.database_url_redacted()} "
        f"({type(exc).__name__}); check ACPROP_TUNER_DATABASE_URL and that the server runs"
    )


def serve(args: argparse.Namespace) -> int:
    """Run the API with uvicorn, after checking that the schema is current."""
    import uvicorn

    from service.app import create_app

    settings = get_settings()
    if "ACPROP_TUNER_RECOMMENDATION_FIT_PROCESS" not in os.environ:
        # A served API fits recommendations in child processes (service/recommendation_fitter.py).
        settings = settings.model_copy(update={"recommendation_fit_process": True})
    logging.basicConfig(level=settings.log_level.upper())
    engine = create_db_engine(settings)
    try:
        check_at_head(engine)
    except SchemaNotAtHead as exc:
        return _fail(f"refusing to start: {exc}", 2)
    except SQLAlchemyError as exc:
        return _unreachable(settings, exc)
    finally:
        engine.dispose()
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=args.port,
        log_level=settings.log_level,
        proxy_headers=True,
    )
    return 0


def migrate(args: argparse.Namespace) -> int:
    """Upgrade the database to the newest schema (idempotent)."""
    settings = get_settings()
    try:
        upgrade(settings.database_url_value())
        engine = create_db_engine(settings)
        try:
            revision = current_revision(engine)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        if is_database_unavailable(exc):
            return _unreachable(settings, exc)
        return _fail(f"migration failed: {type(exc).__name__}")
    print(f"database {settings.database_url_redacted()} is at revision {revision}")
    return 0


def keys(args: argparse.Namespace) -> int:
    """``keys create`` prints the new key alone on stdout; ``revoke`` and ``list`` too."""
    from service import keys as key_store

    settings = get_settings()
    engine = create_db_engine(settings)
    factory = create_session_factory(engine)
    try:
        check_at_head(engine)
        with session_scope(factory) as session:
            if args.keys_command == "create":
                if not 1 <= len(args.tenant) <= 100:
                    return _fail("--tenant must have 1 to 100 characters")
                if args.name is not None and len(args.name) > 100:
                    return _fail("--name must have at most 100 characters")
                key, secret = key_store.create_key(
                    session, tenant=args.tenant, scope=KeyScope(args.scope), name=args.name
                )
                print(secret)
                print(
                    f"created key {key.id} ({key.prefix}...) for tenant {args.tenant!r}",
                    file=sys.stderr,
                )
            elif args.keys_command == "revoke":
                try:
                    key_id = uuid.UUID(args.key_id)
                except ValueError:
                    return _fail(f"not a key id: {args.key_id!r} (see `acprop-tuner keys list`)")
                key = key_store.revoke_key(session, key_id)
                print(
                    f"revoked key {key.id} at {key.revoked_at.isoformat() if key.revoked_at else ''}"
                )
            else:
                rows = key_store.list_keys(session, args.tenant)
                print("id\ttenant\tscope\tname\tprefix\tcreated_at\trevoked_at")
                for k in rows:
                    cells = (k.id, k.tenant, k.scope, k.name or "", f"{k.prefix}...",
                             k.created_at, k.revoked_at or "")  # fmt: skip
                    print("\t".join(safe(c) for c in cells))
    except SchemaNotAtHead as exc:
        return _fail(str(exc), 2)
    except ServiceError as exc:
        return _fail(str(exc.detail))
    except SQLAlchemyError as exc:
        return (
            _unreachable(settings, exc)
            if is_database_unavailable(exc)
            else _fail(f"database error: {type(exc).__name__}")
        )
    finally:
        engine.dispose()
    return 0


def _print_recommendation(rec: Any, as_json: bool) -> None:
    if as_json or not isinstance(rec, dict) or "optax" not in rec:
        print(json.dumps(rec, indent=2))
    else:
        from optimizer.recommendation.text import describe

        print(safe_lines(describe(rec)))


def recommend(args: argparse.Namespace) -> int:
    """Print a job's recommendation, from a server (``--server``) or the local database.

    Until the recommendation exists the server answers 409; its message is printed and the
    exit code is 1.
    """
    try:
        job_id = uuid.UUID(args.job_id)
    except ValueError:
        return _fail(f"not a job id: {args.job_id!r}")
    if args.server:
        from acprop_tuner.client import TunerClient, TunerError

        token = args.token or os.environ.get("ACPROP_TUNER_TOKEN")
        if not token:
            return _fail("a user key is needed: set ACPROP_TUNER_TOKEN (or pass --token)")
        try:
            with TunerClient(args.server, token=token) as client:
                # missing_ok=False: the server's 409 says why there is none yet.
                found = client.recommendation(job_id, missing_ok=False)
        except (TunerError, ValueError) as exc:
            return _fail(str(exc))
        _print_recommendation(found.raw if found else None, args.json)
        return 0

    from service import jobs

    settings = get_settings()
    engine = create_db_engine(settings)
    try:
        check_at_head(engine)
        with session_scope(create_session_factory(engine)) as session:
            rec = jobs.get_recommendation(session, None, job_id)
    except SchemaNotAtHead as exc:
        return _fail(str(exc), 2)
    except ServiceError as exc:
        return _fail(f"{exc.status_code} {exc.error}: {exc.detail}")
    except SQLAlchemyError as exc:
        return _unreachable(settings, exc)
    finally:
        engine.dispose()
    _print_recommendation(rec.to_dict(), args.json)
    return 0
