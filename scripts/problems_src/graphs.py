"""Graphs and BFS: problems 90038-90043."""

PROBLEMS = [
    dict(
        id=90038,
        difficulty="hard",
        signature="def shortestWalkWithBreaks(self, grid: List[List[int]], k: int) -> int:",
        statement="""
        You are given an m x n grid of 0 (open) and 1 (wall) cells, and an integer k. In one step you move up, down, left or right to a cell inside the grid. You may step onto walls, but at most k times in total.
        Return the minimum number of steps to go from the top-left cell to the bottom-right cell, or -1 if it is impossible. The start and end cells are always open.
        """,
        examples=[
            (dict(grid=[[0, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 1], [0, 0, 0]], k=1), "Breaking the wall at (3,2) gives a path of 6 steps."),
            (dict(grid=[[0, 1, 1], [1, 1, 1], [1, 0, 0]], k=1), None),
        ],
        constraints=["1 <= m, n <= 40", "0 <= k <= m * n", "grid[0][0] == grid[m - 1][n - 1] == 0"],
        solution="""
        class Solution:
            def shortestWalkWithBreaks(self, grid: List[List[int]], k: int) -> int:
                m, n = len(grid), len(grid[0])
                # best[r][c]: most breaks left with which (r, c) has been reached
                best = [[-1] * n for _ in range(m)]
                best[0][0] = k
                frontier = deque([(0, 0, k)])
                steps = 0
                while frontier:
                    for _ in range(len(frontier)):
                        r, c, left = frontier.popleft()
                        if r == m - 1 and c == n - 1:
                            return steps
                        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                            if 0 <= nr < m and 0 <= nc < n:
                                rest = left - grid[nr][nc]
                                if rest > best[nr][nc]:
                                    best[nr][nc] = rest
                                    frontier.append((nr, nc, rest))
                    steps += 1
                return -1
        """,
        tests=[
            dict(grid=[[0]], k=0),
            dict(grid=[[0, 1, 0]], k=0),
            dict(grid=[[0, 1, 0]], k=1),
            dict(grid=[[0, 1, 1, 1, 0]], k=2),
            dict(grid=[[0, 0], [0, 0]], k=0),
            dict(grid=[[0, 1, 0, 0, 0], [0, 1, 0, 1, 0], [0, 1, 0, 1, 0], [0, 0, 0, 1, 0]], k=0),
            dict(grid=[[0, 1, 0, 0, 0], [0, 1, 0, 1, 0], [0, 1, 0, 1, 0], [0, 0, 0, 1, 0]], k=1),
            dict(grid=[[0] + [1] * 9] + [[1] * 10 for _ in range(8)] + [[1] * 9 + [0]], k=17),
        ],
    ),
    dict(
        id=90039,
        difficulty="medium",
        signature="def smallestValidOrder(self, n: int, prerequisites: List[List[int]]) -> List[int]:",
        statement="""
        There are n tasks numbered 0 to n - 1. Each pair [a, b] in prerequisites means task b must be done before task a.
        Among all orders that do every task once and respect every prerequisite, return the lexicographically smallest one. If no valid order exists, return an empty list.
        """,
        examples=[
            (dict(n=4, prerequisites=[[1, 0], [2, 0], [3, 1], [3, 2]]), None),
            (dict(n=2, prerequisites=[[0, 1], [1, 0]]), "The two tasks wait for each other."),
        ],
        constraints=["1 <= n <= 10^4", "0 <= prerequisites.length <= 5 * 10^4", "0 <= a, b < n, a != b"],
        solution="""
        class Solution:
            def smallestValidOrder(self, n: int, prerequisites: List[List[int]]) -> List[int]:
                after = [[] for _ in range(n)]
                waiting = [0] * n
                for a, b in prerequisites:
                    after[b].append(a)
                    waiting[a] += 1
                ready = [i for i in range(n) if waiting[i] == 0]
                heapify(ready)
                order = []
                while ready:
                    task = heappop(ready)
                    order.append(task)
                    for nxt in after[task]:
                        waiting[nxt] -= 1
                        if waiting[nxt] == 0:
                            heappush(ready, nxt)
                return order if len(order) == n else []
        """,
        tests=[
            dict(n=1, prerequisites=[]),
            dict(n=3, prerequisites=[]),
            dict(n=3, prerequisites=[[0, 2], [1, 2]]),
            dict(n=5, prerequisites=[[0, 4], [4, 3], [3, 2], [2, 1]]),
            dict(n=4, prerequisites=[[1, 0], [2, 1], [0, 2], [3, 0]]),
            dict(n=6, prerequisites=[[0, 5], [1, 5], [2, 4], [3, 4], [0, 3]]),
            dict(n=4, prerequisites=[[1, 0], [1, 0]]),
        ],
    ),
    dict(
        id=90040,
        difficulty="medium",
        signature="def countLargeIslands(self, grid: List[List[int]], minArea: int) -> int:",
        statement="""
        You are given an m x n grid of 0 (water) and 1 (land). An island is a maximal group of land cells connected horizontally or vertically; its area is its number of cells.
        Return the number of islands whose area is at least minArea.
        """,
        examples=[
            (dict(grid=[[1, 1, 0, 0], [1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 0, 0]], minArea=3), "The islands have areas 3, 3 and 1."),
            (dict(grid=[[0, 0], [0, 0]], minArea=1), None),
        ],
        constraints=["1 <= m, n <= 300", "grid[i][j] is 0 or 1.", "1 <= minArea <= m * n"],
        solution="""
        class Solution:
            def countLargeIslands(self, grid: List[List[int]], minArea: int) -> int:
                m, n = len(grid), len(grid[0])
                seen = [[False] * n for _ in range(m)]
                count = 0
                for i in range(m):
                    for j in range(n):
                        if grid[i][j] != 1 or seen[i][j]:
                            continue
                        seen[i][j] = True
                        stack = [(i, j)]
                        area = 0
                        while stack:
                            r, c = stack.pop()
                            area += 1
                            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                                if 0 <= nr < m and 0 <= nc < n and grid[nr][nc] == 1 and not seen[nr][nc]:
                                    seen[nr][nc] = True
                                    stack.append((nr, nc))
                        if area >= minArea:
                            count += 1
                return count
        """,
        tests=[
            dict(grid=[[1]], minArea=1),
            dict(grid=[[1]], minArea=2),
            dict(grid=[[1, 0, 1, 0, 1]], minArea=1),
            dict(grid=[[1, 1, 1], [1, 0, 1], [1, 1, 1]], minArea=8),
            dict(grid=[[1, 0], [0, 1]], minArea=1),
            dict(grid=[[1 if (i * 3 + j * 5) % 7 < 4 else 0 for j in range(10)] for i in range(8)], minArea=4),
        ],
    ),
    dict(
        id=90041,
        difficulty="medium",
        signature="def reachableWithin(self, n: int, links: List[List[int]], source: int, limit: int) -> int:",
        statement="""
        A network has n nodes numbered 0 to n - 1. Each link [u, v, t] lets a signal travel from u to v (one direction only) in t time units.
        A signal starts at node source at time 0. Return the number of nodes (including source) that the signal can reach by time limit, that is, whose shortest travel time from source is at most limit.
        """,
        examples=[
            (dict(n=4, links=[[0, 1, 2], [1, 2, 2], [0, 2, 5], [2, 3, 1]], source=0, limit=4), "Nodes 0, 1 and 2 are reached at times 0, 2 and 4; node 3 needs time 5."),
            (dict(n=3, links=[[1, 0, 1]], source=0, limit=10), None),
        ],
        constraints=["1 <= n <= 10^4", "0 <= links.length <= 5 * 10^4", "0 <= u, v < n", "0 <= t <= 10^4", "0 <= limit <= 10^9"],
        solution="""
        class Solution:
            def reachableWithin(self, n: int, links: List[List[int]], source: int, limit: int) -> int:
                out = [[] for _ in range(n)]
                for u, v, t in links:
                    out[u].append((v, t))
                dist = [inf] * n
                dist[source] = 0
                heap = [(0, source)]
                while heap:
                    d, u = heappop(heap)
                    if d > dist[u] or d > limit:
                        continue
                    for v, t in out[u]:
                        if d + t < dist[v]:
                            dist[v] = d + t
                            heappush(heap, (d + t, v))
                return sum(1 for d in dist if d <= limit)
        """,
        tests=[
            dict(n=1, links=[], source=0, limit=0),
            dict(n=2, links=[[0, 1, 0]], source=0, limit=0),
            dict(n=3, links=[[0, 1, 5], [1, 2, 5], [0, 2, 20]], source=0, limit=10),
            dict(n=3, links=[[0, 1, 5], [1, 2, 5], [0, 2, 20]], source=2, limit=100),
            dict(n=5, links=[[0, 1, 1], [1, 0, 1], [1, 2, 1], [2, 3, 1], [3, 4, 1], [4, 0, 1]], source=3, limit=3),
            dict(n=12, links=[[i, (i * 5 + 1) % 12, (i * 7) % 9 + 1] for i in range(12)] + [[i, (i + 1) % 12, 6] for i in range(12)], source=0, limit=15),
        ],
    ),
    dict(
        id=90042,
        difficulty="medium",
        signature="def minutesUntilAllWilted(self, garden: List[List[int]]) -> int:",
        statement="""
        A garden is an m x n grid where 0 is an empty plot, 1 a healthy plant and 2 a wilted plant. Every minute, each healthy plant that is horizontally or vertically adjacent to a wilted plant becomes wilted.
        Return the number of minutes until no healthy plant remains, or -1 if some healthy plant never wilts. If there are no healthy plants at the start, return 0.
        """,
        examples=[
            (dict(garden=[[2, 1, 1], [1, 1, 0], [0, 1, 1]]), None),
            (dict(garden=[[2, 1, 1], [0, 1, 1], [1, 0, 1]]), "The plant in the bottom-left corner is cut off."),
        ],
        constraints=["1 <= m, n <= 100", "garden[i][j] is 0, 1 or 2."],
        solution="""
        class Solution:
            def minutesUntilAllWilted(self, garden: List[List[int]]) -> int:
                m, n = len(garden), len(garden[0])
                state = [row[:] for row in garden]
                frontier = deque((i, j) for i in range(m) for j in range(n) if state[i][j] == 2)
                healthy = sum(row.count(1) for row in state)
                minutes = 0
                while frontier and healthy:
                    for _ in range(len(frontier)):
                        r, c = frontier.popleft()
                        for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                            if 0 <= nr < m and 0 <= nc < n and state[nr][nc] == 1:
                                state[nr][nc] = 2
                                healthy -= 1
                                frontier.append((nr, nc))
                    minutes += 1
                return minutes if healthy == 0 else -1
        """,
        tests=[
            dict(garden=[[0]]),
            dict(garden=[[1]]),
            dict(garden=[[2]]),
            dict(garden=[[0, 2]]),
            dict(garden=[[2, 1, 1, 1, 1, 1, 1, 2]]),
            dict(garden=[[1, 1, 1], [1, 2, 1], [1, 1, 1]]),
            dict(garden=[[2, 0, 1], [0, 0, 0], [1, 0, 2]]),
        ],
    ),
    dict(
        id=90043,
        difficulty="medium",
        signature="def canTwoColor(self, n: int, edges: List[List[int]]) -> bool:",
        statement="""
        An undirected graph has n nodes numbered 0 to n - 1 and the given edges (there may be several components, and no self-loops).
        Return true if every node can be painted red or blue so that every edge joins a red node and a blue node, and false otherwise.
        """,
        examples=[
            (dict(n=4, edges=[[0, 1], [1, 2], [2, 3], [3, 0]]), "Paint 0 and 2 red, 1 and 3 blue."),
            (dict(n=3, edges=[[0, 1], [1, 2], [2, 0]]), "A triangle cannot be painted."),
        ],
        constraints=["1 <= n <= 10^4", "0 <= edges.length <= 5 * 10^4", "edges[i] = [u, v] with u != v"],
        solution="""
        class Solution:
            def canTwoColor(self, n: int, edges: List[List[int]]) -> bool:
                adj = [[] for _ in range(n)]
                for u, v in edges:
                    adj[u].append(v)
                    adj[v].append(u)
                color = [-1] * n
                for s in range(n):
                    if color[s] != -1:
                        continue
                    color[s] = 0
                    queue = deque([s])
                    while queue:
                        u = queue.popleft()
                        for v in adj[u]:
                            if color[v] == -1:
                                color[v] = 1 - color[u]
                                queue.append(v)
                            elif color[v] == color[u]:
                                return False
                return True
        """,
        tests=[
            dict(n=1, edges=[]),
            dict(n=2, edges=[[0, 1], [1, 0]]),
            dict(n=5, edges=[[0, 1], [2, 3], [3, 4]]),
            dict(n=6, edges=[[0, 1], [1, 2], [3, 4], [4, 5], [5, 3]]),
            dict(n=5, edges=[[0, 1], [1, 2], [2, 3], [3, 4], [4, 0]]),
            dict(n=8, edges=[[i, (i + 3) % 8] for i in range(8)]),
        ],
    ),
]
