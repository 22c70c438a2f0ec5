import { filtersFromUrl, filtersToUrl, labelFilters, labelsText, listQuery, NO_FILTERS, parseLabels } from "./vmList";
import { lqCommand, NEW_DRAFT, requestBody, reviewRows, validateBasics } from "./wizard";

describe("VM list filters and pages", () => {
  it("ask the API for one page with repeated label filters", () => {
    expect(listQuery(NO_FILTERS, null)).toBe("limit=50");
    expect(listQuery({ state: "running", node: "node-a", labels: "team=web, tier", limit: 25 }, "opaque+cursor")).toBe(
      "limit=25&state=running&node=node-a&label=team%3Dweb&label=tier&cursor=opaque%2Bcursor");
  });

  it("round-trip through the page's URL (any page size the API takes)", () => {
    const filters = { state: "unknown", node: "", labels: "team=web tier", limit: 2 };
    expect(filtersToUrl(filters)).toBe("?state=unknown&label=team%3Dweb&label=tier&limit=2");
    expect(filtersFromUrl(filtersToUrl(filters))).toEqual(filters);
    expect(filtersToUrl(NO_FILTERS)).toBe("");
    expect(filtersFromUrl("?limit=5000").limit).toBe(50);
  });

  it("check label filters as the API does", () => {
    expect(labelFilters("team=web tier").error).toBe("");
    expect(labelFilters("Team=web").error).toMatch(/not a label key/);
    expect(labelFilters("team=we b!").error).toMatch(/not a label key|not a label value/);
  });
});

describe("labels on a new VM", () => {
  it("are read from key=value words and checked", () => {
    expect(parseLabels("team=web, tier=db  canary")).toEqual({ labels: { team: "web", tier: "db", canary: "" }, error: "" });
    expect(parseLabels("team=web team=db").error).toBe("Label 'team' is given twice.");
    expect(parseLabels("Team=web").error).toMatch(/not a label key/);
    expect(parseLabels("team=w/eb").error).toMatch(/not a label value/);
    expect(labelsText({ team: "web", canary: "" })).toBe("team=web, canary");
  });

  it("go into the request, the lq line and the review, and block Basics when wrong", () => {
    const draft = { ...NEW_DRAFT, name: "web-1", boot: "none" as const, labels: "team=web tier=db" };
    expect(requestBody(draft).labels).toEqual({ team: "web", tier: "db" });
    expect(lqCommand(draft, { takenNames: new Set(), images: new Map(), nodes: [] })).toContain("--label team=web --label tier=db");
    expect(reviewRows(draft, { takenNames: new Set(), images: new Map(), nodes: [] }).find((r) => r.label === "Labels")?.value)
      .toBe("team=web, tier=db");
    expect(validateBasics({ ...draft, labels: "Bad=1" }, { takenNames: new Set(), images: new Map(), nodes: [] }).labels).toMatch(/not a label key/);
    expect(requestBody({ ...draft, labels: "" }).labels).toBeUndefined();
  });
});
