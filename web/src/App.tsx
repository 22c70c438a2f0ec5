// The shell: sign-in, the header with navigation and the live indicator, the page for the path.
import { useEffect, useState } from "react";
import { getJson, getToken, onUnauthorized, ProblemError, setToken } from "./api/client";
import { SignIn } from "./components/SignIn";
import { Link, match, useLocation } from "./lib/router";
import { EventsPage } from "./pages/events/EventsPage";
import { ImagesPage } from "./pages/images/ImagesPage";
import { NodesPage } from "./pages/nodes/NodesPage";
import { VmPage } from "./pages/vm/VmPage";
import { VmListPage } from "./pages/vms/VmListPage";
import { WizardPage } from "./pages/wizard/WizardPage";
import { live, useLive } from "./state/live";

const STREAM_TEXT = {
  connecting: "Connecting…",
  open: "Live",
  reconnecting: "Reconnecting…",
  unauthorized: "Signed out",
  closed: "Offline",
} as const;

export function App() {
  const [signedIn, setSignedIn] = useState(() => Boolean(getToken()));
  const [signInError, setSignInError] = useState("");
  const { path } = useLocation();
  const route = match(path);
  const snapshot = useLive();

  useEffect(() => onUnauthorized(() => {
    live.stop();
    setSignInError(getToken() ? "The API rejected this token." : "");
    setSignedIn(false);
  }), []);

  useEffect(() => {
    if (!signedIn) return undefined;
    live.start();
    return () => live.stop();
  }, [signedIn]);

  const signIn = async (token: string) => {
    setToken(token);
    try {
      await getJson("/v1/nodes");
    } catch (err) {
      if (err instanceof ProblemError && err.status === 401) {
        setSignInError("The API rejected this token.");
        return;
      }
      // another failure (gateway down): keep the token, the live indicator will say more
    }
    setSignInError("");
    setSignedIn(true);
  };

  const signOut = () => {
    setToken("");
    setSignInError("");
    setSignedIn(false);
  };

  const nav = [
    { href: "/", label: "VMs", active: route.page === "vms" || route.page === "vm" },
    { href: "/images", label: "Images", active: route.page === "images" },
    { href: "/nodes", label: "Nodes", active: route.page === "nodes" },
    { href: "/events", label: "Events", active: route.page === "events" },
  ];

  return (
    <>
      <a className="skip-link" href="#main">Skip to content</a>
      <header className="top">
        <Link href="/" className="brand" aria-label="Limiquantix home">
          <img src="/ui/favicon.svg" alt="" width={24} height={24} />
          <span>Limiquantix</span>
        </Link>
        <nav aria-label="Main">
          <ul>
            {nav.map((item) => (
              <li key={item.href}>
                <Link href={item.href} aria-current={item.active ? "page" : undefined}>{item.label}</Link>
              </li>
            ))}
          </ul>
        </nav>
        <div className="top-actions">
          <Link href="/vms/new" className="button primary" id="new-vm">Create VM</Link>
          <span id="live" className={`live live-${snapshot.stream}`} data-state={signedIn ? snapshot.stream : "unauthorized"}
                role="status" aria-live="polite">
            {signedIn ? STREAM_TEXT[snapshot.stream] : STREAM_TEXT.unauthorized}
          </span>
          {signedIn && <button type="button" className="small" onClick={signOut}>Sign out</button>}
        </div>
      </header>
      <div className="visually-hidden" aria-live="polite" id="announcer">{snapshot.announcement}</div>
      <main id="main" tabIndex={-1}>
        {signedIn && <Page route={route} />}
      </main>
      <SignIn open={!signedIn} error={signInError} onSubmit={(token) => void signIn(token)} />
    </>
  );
}

function Page({ route }: { route: ReturnType<typeof match> }) {
  switch (route.page) {
    case "vms": return <VmListPage />;
    case "wizard": return <WizardPage />;
    case "vm": return <VmPage vmRef={route.vm ?? ""} tab={route.tab ?? "overview"} />;
    case "images": return <ImagesPage />;
    case "nodes": return <NodesPage />;
    case "events": return <EventsPage />;
    default:
      return (
        <section className="page">
          <h1>Not found</h1>
          <p>No page here. <Link href="/">Back to the VMs</Link>.</p>
        </section>
      );
  }
}
