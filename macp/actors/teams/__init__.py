"""Teams of agents at work: collaboration sessions, projects and goals, on the head node.

- :mod:`.session`: the :class:`~.session.Session` record, its states and its participants';
- :mod:`.sessions`: the :class:`Sessions` actor (sessions, their messages, presence from the
  registry, requests for assistance in :mod:`.assist`);
- :mod:`.member`: :class:`SessionMember`, the agent that receives session messages;
- :mod:`.work`: projects, goals and the rule deriving a goal's progress from its linked work;
- :mod:`.projects`: the :class:`Projects` actor;
- :mod:`.watch`: the registry as these actors see it;
- :mod:`.messages`: the messages of both actors, and the urgency-to-priority map.
"""

from __future__ import annotations

from macp.actors.teams.member import SessionMember as SessionMember
from macp.actors.teams.messages import PROJECTS as PROJECTS
from macp.actors.teams.messages import SESSIONS as SESSIONS
from macp.actors.teams.messages import URGENCY as URGENCY
from macp.actors.teams.projects import Projects as Projects
from macp.actors.teams.sessions import Sessions as Sessions
from macp.actors.teams.work import WorkStatus as WorkStatus

__all__ = ["PROJECTS", "SESSIONS", "URGENCY", "Projects", "SessionMember", "Sessions", "WorkStatus"]
