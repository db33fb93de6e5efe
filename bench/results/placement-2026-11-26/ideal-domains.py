# A simulation of `trace synth --domains 32 --affinity 0.65 --skew 0.4` (DeepSeek-V3 shape, 8 nodes)
# with an ideal placement: every domain's experts on one node at every layer, balance ignored.
# Prints cross-node transitions under the nearest-replica rule for several replica allocations.
# python3 ideal-domains.py (numpy; ~5 minutes). Numbers quoted in placement/README.md.
import numpy as np
rng=np.random.default_rng(1)
E=256;D=32;N=8;K=8;A=0.65;skew=0.4;L=12;T=8192;R=64
def layer():
    w=np.empty(E); perm=rng.permutation(E); w[perm]=1/np.arange(1,E+1)**skew
    gp=rng.permutation(E); groups=[gp[d::D] for d in range(D)]
    node=np.empty(E,int)
    for d in range(D): node[groups[d]]=d%N
    return w,groups,node
Ls=[layer() for _ in range(L)]
dom=rng.integers(0,D,T)
# sample routing
route=np.zeros((T,L,K),int)
for l,(w,groups,node) in enumerate(Ls):
    p=w/w.sum()
    for t in range(T):
        chosen=set(); g=groups[dom[t]]; pg=w[g]/w[g].sum()
        for j in range(K):
            e=-1
            if rng.random()<A:
                for _ in range(64):
                    c=rng.choice(g,p=pg)
                    if c not in chosen: e=c;break
            while e<0:
                c=rng.choice(E,p=p)
                if c not in chosen: e=c
            chosen.add(e); route[t,l,j]=e
# loads per layer, replicas: top R by load get a 2nd copy
def cross(mode,c=1):
    tot=0;cr=0
    nodesets=[]
    for l,(w,groups,node) in enumerate(Ls):
        load=np.bincount(route[:,l].ravel(),minlength=E)
        top=np.argsort(-load)[:R]
        ns=[{node[e]} for e in range(E)]
        if mode=='random':
            for e in top: ns[e].add((node[e]+1+rng.integers(0,N-1))%N)
        nodesets.append(ns)
    if mode=='best':
        # place 2nd copy on the node with most partner mass (prev+next layers), greedily, per-node 8 replica slots
        for l,(w,groups,node) in enumerate(Ls):
            load=np.bincount(route[:,l].ravel(),minlength=E); top=np.argsort(-load)[:R//c]
            score=np.zeros((E,N))
            for nb in [l-1,l+1]:
                if nb<0 or nb>=L: continue
                a=route[:,l]; b=route[:,nb]
                for i in range(K):
                    for j in range(K):
                        np.add.at(score,(a[:,i],Ls[nb][2][b[:,j]]),1)
            free=np.full(N,R//N)
            for rep in range(c):
              for e in top:
                s=score[e].copy(); s[list(nodesets[l][e])]=-1; s[free==0]=-1
                n=int(np.argmax(s)); nodesets[l][e].add(n); free[n]-=1
    for l in range(L-1):
        a=route[:,l]; b=route[:,l+1]
        for i in range(K):
            for j in range(K):
                ea=a[:,i]; eb=b[:,j]
                loc=np.array([len(nodesets[l][x]&nodesets[l+1][y])>0 for x,y in zip(ea,eb)])
                tot+=len(loc); cr+=(~loc).sum()
    return cr/tot

print('no replicas', cross('none'))
print('one extra copy for the 64 busiest, on a random other node', cross('random'))
for c in [1,2,4]: print('best-node, top', R//c, 'experts x', c, 'extra copies', cross('best',c))
