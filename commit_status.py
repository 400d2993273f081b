"""A build's state on its commit, where the team looks: GitHub's commit statuses, GitLab's commit
status API, Codeup's CreateCommitStatus (Yunxiao OpenAPI), and (Gitee has no status API for this) a
comment on the pull request.

The token comes from the function's environment (FCBUILD_<PROVIDER>_STATUS_TOKEN), never from a
request, and the API from the repository's configuration; a report that fails is logged and never
fails the build.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import notify

CONTEXT = "fcbuild"
TIMEOUT_S = 5.0
_GITLAB_STATES = {"pending": "running", "success": "success", "failure": "failed"}


@dataclass(frozen=True)
class Report:
    provider: str
    api: str  # the API's base URL
    token: str
    repo_path: str  # owner/name
    project_id: str  # GitLab: id or path ("" : repo_path)
    sha: str
    pr: int = 0
    organization: str = ""  # Codeup, central edition: the organization's id


def request_for(
    report: Report, state: str, url: str, description: str
) -> tuple[str, str, bytes, dict[str, str]] | None:
    """(method, url, body, headers) telling the provider `state` (pending | success | failure), or
    None where the provider takes nothing for it (Gitee: only the outcome, as a comment)."""
    description = description.splitlines()[0][:140] if description else ""
    if report.provider == "github":
        owner_repo = urllib.parse.quote(report.repo_path, safe="/")
        body = {"state": state, "context": CONTEXT, "description": description}
        if url:
            body["target_url"] = url
        headers = {
            "Authorization": f"Bearer {report.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Content-Type": "application/json",
        }
        return "POST", f"{report.api}/repos/{owner_repo}/statuses/{report.sha}", json.dumps(body).encode(), headers
    if report.provider == "gitlab":
        project = urllib.parse.quote(report.project_id or report.repo_path, safe="")
        body = {"state": _GITLAB_STATES[state], "name": CONTEXT, "description": description}
        if url:
            body["target_url"] = url
        headers = {"PRIVATE-TOKEN": report.token, "Content-Type": "application/json"}
        return "POST", f"{report.api}/projects/{project}/statuses/{report.sha}", json.dumps(body).encode(), headers
    if report.provider == "codeup":
        repository = urllib.parse.quote(report.project_id or report.repo_path, safe="")
        org = f"organizations/{urllib.parse.quote(report.organization, safe='')}/" if report.organization else ""
        body = {"context": CONTEXT, "state": state, "description": description}
        if url:
            body["targetUrl"] = url
        headers = {"x-yunxiao-token": report.token, "Content-Type": "application/json"}
        where = f"{report.api}/oapi/v1/codeup/{org}repositories/{repository}/commits/{report.sha}/statuses"
        return "POST", where, json.dumps(body).encode(), headers
    if report.provider == "gitee":
        if state == "pending" or not report.pr:
            return None
        owner_repo = urllib.parse.quote(report.repo_path, safe="/")
        text = f"fcbuild: {'deployed ' + url if state == 'success' and url else state}"
        if state == "failure" and description:
            text += f"\n\n{description}"
        form = urllib.parse.urlencode({"access_token": report.token, "body": text}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return "POST", f"{report.api}/repos/{owner_repo}/pulls/{report.pr}/comments", form, headers
    return None


def send(report: Report, state: str, url: str, description: str, log: Any) -> dict[str, Any]:
    """Tell the provider; what happened, for the result (never the provider's answer beyond its status)."""
    planned = request_for(report, state, url, description)
    if planned is None:
        return {"state": state, "sent": False}
    method, where, body, headers = planned
    request = urllib.request.Request(where, data=body, method=method, headers=headers)
    try:
        with notify.opener().open(request, timeout=TIMEOUT_S) as response:  # no redirect: the token stays
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        log.warning("commit status %s for %s: %s", state, report.sha[:12], type(exc).__name__)
        return {"state": state, "sent": False, "error": type(exc).__name__}
    if status >= 300:
        log.warning("commit status %s for %s: HTTP %d from %s", state, report.sha[:12], status, report.provider)
    else:
        log.info("commit status %s for %s sent to %s", state, report.sha[:12], report.provider)
    return {"state": state, "sent": status < 300, "status": status}
